"""What the reuse policy says of a request, and the audited edits of its tables.

The policy is data (``PolicyRule`` rows and the ``License`` table), editable
by staff in the admin; every edit goes through ``license_save`` /
``policy_rule_save`` / ``policy_rule_delete`` here, so it is audited with its
before and after like every other change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from governance.audit import policy_row_delete, policy_row_save
from governance.models import License, PolicyRule, ReviewInterval, RiskEntry
from governance.roles import REVIEW_ROLES
from portal.errors import PortalError
from portal.text import and_list
from zoo.models import ModelVersion
from zoo.selectors.release_checks import release_checks_missing


@dataclass
class PolicyOutcome:
    """What the policy says of a request before it is made."""

    refused: bool
    roles: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def explanation(self) -> str:
        if self.refused:
            return "Refused: " + " ".join(self.reasons)
        return f"Needs {and_list(self.roles)} review. " + " ".join(self.reasons)


def policy_evaluate(
    *, version: ModelVersion, use_type: str, sensitivity: str, blocked_refuses: bool = True
) -> PolicyOutcome:
    """What the policy says of a request; ``blocked_refuses=False`` asks which roles it
    would need were the version not blocked (an approval sent back to review while a
    block is in place keeps its place in the queue)."""
    if version.is_blocked and blocked_refuses:
        return PolicyOutcome(
            True, reasons=["This version is blocked: " + " ".join(version.block_reasons)]
        )
    if version.model.status in ("blocked", "deprecated"):
        return PolicyOutcome(
            True, reasons=[f"The model is {version.model.status}: {version.model.status_reason}"]
        )
    category = version.license.category
    risk = highest_open_risk(version)
    refusals, roles, reasons = [], [], []
    for rule in PolicyRule.objects.filter(active=True):
        if not rule.matches(
            license_category=category, use_type=use_type, sensitivity=sensitivity, risk=risk
        ):
            continue
        if rule.outcome == PolicyRule.Outcome.REFUSE:
            refusals.append(rule.reason)
        else:
            roles.extend(r for r in rule.required_roles if r in REVIEW_ROLES and r not in roles)
            reasons.append(rule.reason)
    unpassed = release_checks_missing(version, use_type=use_type)
    if unpassed:
        refusals.append(
            f"Release checks required for {use_type} use have not passed on this version: "
            f"{'; '.join(unpassed)}."
        )
    if refusals:
        return PolicyOutcome(True, reasons=refusals)
    if not roles:
        roles, reasons = ["legal"], ["Every reuse needs at least a legal review."]
    ordered = [r for r in REVIEW_ROLES if r in roles]
    return PolicyOutcome(False, roles=ordered, reasons=reasons)


def highest_open_risk(version: ModelVersion) -> int:
    """The severity (1-4) of the version's worst open risk; 0 when none is open."""
    return (
        version.risks.filter(status=RiskEntry.Status.OPEN)
        .order_by("-severity")
        .values_list("severity", flat=True)
        .first()
        or 0
    )


def license_save(*, actor, license: License | None = None, **fields) -> License:
    """Add a license or change one (its category and commercial flag drive the policy)."""
    return policy_row_save(actor=actor, obj=license or License(), verb="license", fields=fields)


def policy_rule_save(*, actor, rule: PolicyRule | None = None, **fields) -> PolicyRule:
    """Add a policy rule or change one; roles are checked against the review roles."""
    roles = fields.get("required_roles", rule.required_roles if rule else [])
    unknown = sorted(set(roles or []) - set(REVIEW_ROLES))
    if unknown:
        raise PortalError(
            f"Unknown review role {unknown[0]!r}; use {', '.join(REVIEW_ROLES)}.",
            field="required_roles",
        )
    return policy_row_save(actor=actor, obj=rule or PolicyRule(), verb="policy_rule", fields=fields)


def review_interval_save(*, actor, interval: ReviewInterval | None = None, **fields):
    """Add or change a re-review interval; schedules follow at their next refresh."""
    categories = fields.get("license_categories", interval.license_categories if interval else [])
    unknown = sorted(set(categories or []) - set(License.Category.values))
    if unknown:
        raise PortalError(
            f"Unknown license category {unknown[0]!r}; use {', '.join(License.Category.values)}.",
            field="license_categories",
        )
    return policy_row_save(
        actor=actor, obj=interval or ReviewInterval(), verb="review_interval", fields=fields
    )


def policy_rule_delete(*, actor, rule: PolicyRule) -> None:
    policy_row_delete(actor=actor, obj=rule, verb="policy_rule")
