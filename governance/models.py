from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone


class License(models.Model):
    """A license a model can carry, keyed by the SPDX-style id that model cards use."""

    class Category(models.TextChoices):
        PERMISSIVE = "permissive", "Permissive"
        WEAK_COPYLEFT = "weak-copyleft", "Weak copyleft"
        COPYLEFT = "copyleft", "Copyleft"
        NON_COMMERCIAL = "non-commercial", "Non-commercial"
        RESTRICTED_USE = "restricted-use", "Restricted use"
        PROPRIETARY = "proprietary", "Proprietary"
        UNKNOWN = "unknown", "Unknown"

    spdx_id = models.CharField(
        max_length=64, unique=True, help_text="Lower-case id as in model cards, e.g. apache-2.0."
    )
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=20, choices=Category.choices)
    commercial_use = models.BooleanField(help_text="Whether commercial use is allowed at all.")
    attribution_required = models.BooleanField(default=False)
    url = models.URLField(blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["spdx_id"]

    def __str__(self) -> str:
        return self.spdx_id

    @property
    def is_unknown(self) -> bool:
        return self.category == self.Category.UNKNOWN

    @property
    def forbids_derivatives(self) -> bool:
        """Creative Commons "NoDerivatives" licenses (cc-by-nd-4.0, cc-by-nc-nd-4.0, …)."""
        return "nd" in self.spdx_id.lower().split("-")


class AuditEvent(models.Model):
    """One append-only, hash-chained record of who did what; never updated or deleted."""

    # No database foreign key: deleting a user must not rewrite history (the
    # copied name stays), and the table refuses UPDATE, which SET_NULL would need.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    verb = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=300, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # How ``hash`` was computed: "hmac-sha256" (keyed), or "sha256" for events
    # recorded before the chain was keyed.
    scheme = models.CharField(max_length=16, default="hmac-sha256")

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
            models.Index(fields=["verb"], name="audit_verb"),
            models.Index(fields=["created_at"], name="audit_time"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name or 'system'} {self.verb} {self.target_repr}"


class UseType(models.TextChoices):
    RESEARCH = "research", "Research"
    INTERNAL = "internal", "Internal tool"
    COMMERCIAL = "commercial", "Customer-facing / commercial"


class Sensitivity(models.TextChoices):
    """How sensitive data is, from least to most: the order is the rule approvals follow."""

    PUBLIC = "public", "Public"
    INTERNAL = "internal", "Internal"
    CONFIDENTIAL = "confidential", "Confidential"
    RESTRICTED = "restricted", "Restricted"

    @classmethod
    def rank(cls, value: str) -> int:
        return cls.values.index(value)

    @classmethod
    def at_least(cls, value: str) -> list[str]:
        """This level and every more sensitive one: the approvals that cover data of ``value``."""
        return cls.values[cls.rank(value) :]

    @classmethod
    def needs_approval(cls, value: str) -> bool:
        """Confidential and restricted data are used only under an approval that covers them."""
        return cls.rank(value) >= cls.rank(cls.CONFIDENTIAL)


class PolicyRule(models.Model):
    """One row of the reuse policy: when it matches, refuse, or require review roles."""

    class Outcome(models.TextChoices):
        REFUSE = "refuse", "Refuse"
        REVIEW = "review", "Require review"

    name = models.CharField(max_length=120, unique=True)
    license_categories = models.JSONField(
        default=list, blank=True, help_text="License categories it applies to; empty for any."
    )
    use_types = models.JSONField(default=list, blank=True, help_text="Empty for any use type.")
    sensitivities = models.JSONField(
        default=list, blank=True, help_text="Data sensitivities; empty for any."
    )
    min_risk = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Applies when the version's highest open risk is at least this "
        "(1 low … 4 critical); empty for any.",
    )
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    required_roles = models.JSONField(
        default=list, blank=True, help_text="legal, security and/or compliance."
    )
    reason = models.CharField(max_length=300, help_text="Shown to the requester.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["outcome", "name"]

    def __str__(self) -> str:
        return self.name

    def matches(
        self, *, license_category: str, use_type: str, sensitivity: str, risk: int = 0
    ) -> bool:
        return (
            (self.min_risk is None or risk >= self.min_risk)
            and (not self.license_categories or license_category in self.license_categories)
            and (not self.use_types or use_type in self.use_types)
            and (not self.sensitivities or sensitivity in self.sensitivities)
        )


class ReuseRequest(models.Model):
    """A request to reuse one model version for a stated purpose."""

    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        WITHDRAWN = "withdrawn", "Withdrawn"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    OPEN = (Status.SUBMITTED, Status.CHANGES_REQUESTED)

    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reuse_requests"
    )
    version = models.ForeignKey(
        "zoo.ModelVersion", on_delete=models.PROTECT, related_name="reuse_requests"
    )
    intended_use = models.TextField()
    use_type = models.CharField(max_length=12, choices=UseType.choices)
    business_unit = models.CharField(max_length=120)
    data_sensitivity = models.CharField(max_length=12, choices=Sensitivity.choices)
    justification = models.TextField()
    duration_days = models.PositiveIntegerField(default=90)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED)
    required_roles = models.JSONField(default=list)
    policy_explanation = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "expires_at"], name="reuse_status_expiry")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(duration_days__gte=1) & models.Q(duration_days__lte=730),
                name="reuse_duration_1_to_730_days",
            )
        ]

    def __str__(self) -> str:
        return f"Request #{self.pk} by {self.requester} for {self.version}"


def review_round(decisions) -> int:
    """The current review round: each request for changes opens the next one."""
    return 1 + sum(1 for d in decisions if d == "changes")


class Review(models.Model):
    """One decision by one reviewer in one role on one request."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"
        CHANGES = "changes", "Request changes"

    request = models.ForeignKey(ReuseRequest, on_delete=models.CASCADE, related_name="reviews")
    # Copied from the request so the database itself can refuse self-review.
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews"
    )
    role = models.CharField(max_length=20)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    round = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "role", "round"], name="review_one_per_role_per_round"
            ),
            models.UniqueConstraint(
                fields=["request", "reviewer", "round"], name="review_one_role_per_person"
            ),
            models.CheckConstraint(
                condition=~models.Q(reviewer=models.F("requester")), name="review_not_by_requester"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.decision} on #{self.request_id}"


class RiskEntry(models.Model):
    """One risk recorded against a model version, with its mitigation and owner."""

    class Category(models.TextChoices):
        BIAS = "bias", "Bias"
        PRIVACY = "privacy", "Privacy"
        SECURITY = "security", "Security"
        LICENSE = "license", "License"
        PERFORMANCE = "performance", "Performance"
        MISUSE = "misuse", "Misuse"

    class Level(models.IntegerChoices):
        LOW = 1, "Low"
        MEDIUM = 2, "Medium"
        HIGH = 3, "High"
        CRITICAL = 4, "Critical"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        MITIGATED = "mitigated", "Mitigated"
        ACCEPTED = "accepted", "Accepted"
        CLOSED = "closed", "Closed"

    version = models.ForeignKey("zoo.ModelVersion", on_delete=models.CASCADE, related_name="risks")
    category = models.CharField(max_length=12, choices=Category.choices)
    title = models.CharField(max_length=200)
    severity = models.PositiveSmallIntegerField(choices=Level.choices)
    likelihood = models.PositiveSmallIntegerField(choices=Level.choices)
    mitigation = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-severity", "-likelihood", "id"]
        indexes = [models.Index(fields=["version", "status"], name="risk_version_status")]

    def __str__(self) -> str:
        return f"{self.get_severity_display()} {self.category} risk: {self.title}"


# Portal tokens carry their own prefix: a Hugging Face token (hf_…) that the client
# sends from a user's saved login is recognised as foreign at a glance and refused.
ACCESS_TOKEN_PREFIX = "zoo_pat_"  # noqa: S105 (a prefix, not a secret)
API_TOKEN_PREFIX = "zoo_api_"  # noqa: S105 (a prefix, not a secret)
ACCESS_TOKEN_SHOWN_CHARS = 8  # characters of the secret kept in `prefix` for display
ACCESS_TOKEN_DEFAULT_DAYS = 90
ACCESS_TOKEN_MAX_DAYS = 365


def access_token_digest(raw: str) -> str:
    """The stored form of a token: its sha256 (the secret has 256 random bits, so no salt)."""
    return hashlib.sha256(raw.encode()).hexdigest()


class AccessToken(models.Model):
    """A personal token, of one scope; only its digest is kept.

    "read" tokens (``zoo_pat_…``) download through the Hugging Face-compatible
    endpoint and nothing else; "api" tokens (``zoo_api_…``) act as their owner in
    the REST API and are refused by the hub endpoint. Both expire and can be revoked.
    """

    class Scope(models.TextChoices):
        READ = "read", "Hugging Face downloads"
        API = "api", "REST API"

        @property
        def prefix(self) -> str:
            return API_TOKEN_PREFIX if self == AccessToken.Scope.API else ACCESS_TOKEN_PREFIX

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'laptop'.")
    # The fixed prefix and the first characters of the secret: enough to recognise a
    # token in a list or a leaked file, far too little to use it.
    prefix = models.CharField(max_length=20)
    digest = models.CharField(max_length=64, unique=True, help_text="sha256 of the whole token.")
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="token_user_recent")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scope__in=["read", "api"]), name="token_scope_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("created_at")),
                name="token_expires_after_creation",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and self.expires_at > now
