from __future__ import annotations

from django.conf import settings
from django.db import models


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

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
            models.Index(fields=["verb"], name="audit_verb"),
            models.Index(fields=["created_at"], name="audit_time"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name or 'system'} {self.verb} {self.target_repr}"
