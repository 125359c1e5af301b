from __future__ import annotations

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
