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
        SUSPENDED = "suspended", "Suspended"

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
    # Times the approval went back to review because the version changed; each opens a round.
    reopened = models.PositiveIntegerField(default=0)
    reopen_reason = models.TextField(blank=True, help_text="What changed, for the reviewers.")
    # Reminders already sent for this approval's expiry ("14d", "1d", "expired").
    reminders_sent = models.JSONField(default=list, blank=True)
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


def review_round(decisions, reopened: int = 0) -> int:
    """The current review round: each request for changes, and each time an approval
    went back to review, opens the next one."""
    return 1 + reopened + sum(1 for d in decisions if d == "changes")


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
    # The release check whose finding opened this entry (the evidence), if one did.
    release_check = models.ForeignKey(
        "zoo.ReleaseCheck",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="risks",
    )
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


# --- The lifecycle: notifications, re-review, incidents ----------------------------


class NotificationKind(models.TextChoices):
    REVIEW_NEEDED = "review_needed", "A request needs your review"
    DECISION = "decision", "A decision on your request"
    CHANGES_REQUESTED = "changes_requested", "Changes requested on your request"
    REVOKED = "revoked", "Your approval was revoked"
    BACK_TO_REVIEW = "back_to_review", "Your approval went back to review"
    EXPIRING = "expiring", "Your approval expires soon"
    EXPIRED = "expired", "Your approval expired"
    AWAITING_PUBLICATION = "awaiting_publication", "A model waits to be published"
    REREVIEW_DUE = "rereview_due", "A re-review is due"
    INCIDENT = "incident", "An incident touches a model you use or made"
    DRIFT = "drift", "Production inputs of a model you made or own drifted"


class Notification(models.Model):
    """One event in one person's inbox."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=24, choices=NotificationKind.choices)
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=500, blank=True)
    # Names the event, so that a reminder sent twice (a retried beat run) lands once.
    event_key = models.CharField(max_length=120)
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)
    # Whether the person shows it in the inbox (else it exists only to be e-mailed).
    in_inbox = models.BooleanField(default=True)
    # E-mail: wanted by the person's preferences; sent when the SMTP server took it.
    email_wanted = models.BooleanField(default=False)
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_attempts = models.PositiveSmallIntegerField(default=0)
    email_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "event_key"], name="notification_once")
        ]
        indexes = [
            models.Index(
                fields=["user", "created_at"],
                condition=models.Q(read_at__isnull=True),
                name="notification_unread",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user_id}: {self.title}"


class NotificationPreference(models.Model):
    """Which channels one person wants for one kind of event (absent: inbox and e-mail)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(max_length=24, choices=NotificationKind.choices)
    inbox = models.BooleanField(default=True)
    email = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="notification_preference_once")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind}: inbox={self.inbox} email={self.email}"


class WebhookEndpoint(models.Model):
    """A URL staff registered to receive signed events (the Standard Webhooks scheme)."""

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    # The signing secret in the scheme's "whsec_<base64>" form; shown once at creation.
    secret = models.CharField(max_length=100)
    kinds = models.JSONField(default=list, blank=True, help_text="Empty for every kind.")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"

    def wants(self, kind: str) -> bool:
        return self.active and (not self.kinds or kind in self.kinds)


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one endpoint, with every attempt's outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    message_id = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=24, choices=NotificationKind.choices)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint")]

    def __str__(self) -> str:
        return f"{self.message_id} → {self.endpoint_id}: {self.status}"


class ReviewInterval(models.Model):
    """Policy data: how often a published version's owner re-attests its card, license
    and risks, by license category and risk; the shortest matching interval applies."""

    name = models.CharField(max_length=120, unique=True)
    license_categories = models.JSONField(default=list, blank=True, help_text="Empty for any.")
    min_risk = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Applies when the version's highest open risk is at least this (1-4).",
    )
    days = models.PositiveIntegerField()
    overdue_suspends_approvals = models.BooleanField(
        default=False, help_text="While overdue, reviewers cannot approve new requests for it."
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["days", "name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(days__gte=1) & models.Q(days__lte=1095),
                name="review_interval_1_to_1095_days",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}: every {self.days} days"

    def matches(self, *, license_category: str, risk: int) -> bool:
        return (self.min_risk is None or risk >= self.min_risk) and (
            not self.license_categories or license_category in self.license_categories
        )


class Rereview(models.Model):
    """A published version's re-review schedule: when its owner must next re-attest."""

    version = models.OneToOneField(
        "zoo.ModelVersion", on_delete=models.CASCADE, related_name="rereview"
    )
    due_at = models.DateTimeField()
    interval_days = models.PositiveIntegerField()
    overdue_suspends_approvals = models.BooleanField(default=False)
    last_attested_at = models.DateTimeField(null=True, blank=True)
    last_attested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_note = models.TextField(blank=True)

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [models.Index(fields=["due_at"], name="rereview_due")]

    def __str__(self) -> str:
        return f"re-review of {self.version_id} due {self.due_at:%Y-%m-%d}"

    def is_overdue(self, now=None) -> bool:
        return self.due_at <= (now or timezone.now())


class IncidentCategory(models.TextChoices):
    BACKDOOR = "backdoor", "Security backdoor"
    PERSONAL_DATA = "personal_data", "Memorised personal data"
    LICENSE = "license", "License problem"
    HARMFUL = "harmful", "Harmful behaviour"


class Incident(models.Model):
    """Something found wrong with a version; a recall reaches everything made from it."""

    # The risk register's scale: low, medium, high, critical.
    Severity = RiskEntry.Level

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    # From this severity on a recall blocks the descendants too; below it, flags them.
    BLOCKS_DESCENDANTS_FROM = Severity.HIGH

    version = models.ForeignKey(
        "zoo.ModelVersion", on_delete=models.PROTECT, related_name="incidents"
    )
    category = models.CharField(max_length=16, choices=IncidentCategory.choices)
    severity = models.PositiveSmallIntegerField(choices=Severity.choices)
    title = models.CharField(max_length=200)
    description = models.TextField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    opened_at = models.DateTimeField()
    recalled_at = models.DateTimeField(null=True, blank=True)
    recall_lifted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["status", "-opened_at"], name="incident_status")]

    def __str__(self) -> str:
        return f"Incident #{self.pk}: {self.title}"

    @property
    def source(self) -> str:
        """The name its holds carry in zoo."""
        return f"incident:{self.pk}"

    @property
    def recall_active(self) -> bool:
        return self.recalled_at is not None and self.recall_lifted_at is None


class IncidentStep(models.Model):
    """One step of an incident's playbook, done by someone at some time."""

    class Step(models.TextChoices):
        CONTAIN = "contain", "Contain"
        ASSESS = "assess", "Assess"
        NOTIFY = "notify", "Notify"
        REMEDIATE = "remediate", "Remediate"
        CLOSE = "close", "Close"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="steps")
    step = models.CharField(max_length=10, choices=Step.choices)
    note = models.TextField()
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    done_at = models.DateTimeField()

    class Meta:
        ordering = ["done_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "step"], name="incident_step_once")
        ]

    def __str__(self) -> str:
        return f"{self.step} of incident {self.incident_id}"


class RecallEffect(models.Model):
    """What a recall did to one version, so that lifting it restores exactly that."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="effects")
    version = models.ForeignKey("zoo.ModelVersion", on_delete=models.PROTECT, related_name="+")
    depth = models.PositiveSmallIntegerField(help_text="0 for the recalled version itself.")
    blocked = models.BooleanField(help_text="Blocked, or only flagged.")
    suspended_requests = models.JSONField(default=list, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["depth", "version_id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "version"], name="recall_effect_once")
        ]

    def __str__(self) -> str:
        return f"recall {self.incident_id} on {self.version_id}"


class SsoIdentity(models.Model):
    """A person at the OpenID provider (issuer + subject) and the portal account they sign in as.

    ``roles`` are the roles single sign-on itself gave this account: only those
    are taken away when the directory stops granting them (see governance.services.sso).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    roles = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique")
        ]
        verbose_name_plural = "SSO identities"

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
