"""Release checks as the publish gate, the reuse policy and the version page read them."""

from __future__ import annotations

from zoo.models import ModelVersion, ReleaseCheck, ReleaseCheckRule


def latest_release_checks(version: ModelVersion) -> dict[str, ReleaseCheck]:
    """The newest check of each kind on ``version`` (running ones included), by kind."""
    latest: dict[str, ReleaseCheck] = {}
    for check in version.release_checks.select_related("requested_by").order_by(
        "kind", "-created_at", "-id"
    ):
        latest.setdefault(check.kind, check)
    return latest


def latest_finished_checks(version: ModelVersion) -> dict[str, ReleaseCheck]:
    """The newest finished check of each kind: what a verdict is read from."""
    latest: dict[str, ReleaseCheck] = {}
    for check in version.release_checks.filter(status__in=ReleaseCheck.FINISHED).order_by(
        "kind", "-finished_at", "-id"
    ):
        latest.setdefault(check.kind, check)
    return latest


def release_check_rules(*, use_type: str | None = None) -> list[ReleaseCheckRule]:
    """Active rules for publishing (``use_type=None``) or for one use type."""
    rules = list(ReleaseCheckRule.objects.filter(active=True).order_by("kind", "id"))
    if use_type is None:
        return [rule for rule in rules if not rule.use_types]
    return [rule for rule in rules if use_type in (rule.use_types or [])]


def _why_not(check: ReleaseCheck | None, rule: ReleaseCheckRule) -> str | None:
    label = rule.get_kind_display().lower()
    if check is None:
        return f"{label} (not run)"
    if check.status == ReleaseCheck.Status.ERROR:
        return f"{label} (could not run: {check.error or 'see its job'})"
    if check.passes(rule.limit):
        return None
    return (
        f"{label} ({check.measure_name} {check.measure:.4g}, needs at most {rule.limit:g})"
        if (ReleaseCheck.DIRECTIONS[check.kind][1] == "max")
        else f"{label} ({check.measure_name} {check.measure:.4g}, needs at least {rule.limit:g})"
    )


def release_checks_missing(version: ModelVersion, *, use_type: str | None = None) -> list[str]:
    """The required checks that have not passed on ``version``, each with why; [] when none.

    ``use_type=None`` asks what publishing requires (rules without use types);
    otherwise what a reuse request for that use type requires.
    """
    rules = release_check_rules(use_type=use_type)
    if not rules:
        return []
    checks = latest_finished_checks(version)
    missing = []
    for rule in rules:
        why = _why_not(checks.get(rule.kind), rule)
        if why and why not in missing:
            missing.append(why)
    return missing
