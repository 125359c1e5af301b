"""What governance does when a version's standing changes: its license, its block
status (zoo announces both, see zoo.services.events) or its highest open risk.

Every live approval on the version goes back to review with the change spelled
out for the reviewers, and the re-review schedule follows the new interval.
"""

from __future__ import annotations

from governance.models import RiskEntry
from governance.services.rereview import rereview_refresh
from governance.services.reuse import approvals_reopen
from zoo.models import ModelVersion


def _level(value: int) -> str:
    return RiskEntry.Level(value).label.lower() if value else "none"


def describe(changes: list[dict]) -> str:
    """The changes in words, as reviewers read them."""
    said = []
    for change in changes:
        what = change["what"]
        if what == "license":
            said.append(f"The license changed from {change['before']} to {change['after']}.")
        elif what == "blocked":
            if change["after"] == ModelVersion.Status.BLOCKED:
                said.append("The version was blocked: " + " ".join(change.get("reasons") or []))
            else:
                said.append("The version's block was cleared.")
        elif what == "risk":
            said.append(
                f"Its highest open risk went from {_level(change['before'])} to "
                f"{_level(change['after'])}."
            )
    return " ".join(said)


def version_standing_changed(*, version: ModelVersion, actor, changes: list[dict]) -> list[int]:
    """Reopen the approvals on ``version`` and refresh its schedule; the reopened requests."""
    if not changes:
        return []
    reopened = approvals_reopen(version=version, actor=actor, change=describe(changes))
    rereview_refresh(
        version=ModelVersion.objects.select_related("model", "license").get(pk=version.pk)
    )
    return reopened


def on_version_standing_changed(sender, *, version, actor, changes, **kwargs) -> None:
    """The receiver of zoo's ``version_standing_changed`` (connected in GovernanceConfig)."""
    version_standing_changed(version=version, actor=actor, changes=changes)
