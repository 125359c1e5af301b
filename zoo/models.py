from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from governance.models import License, Sensitivity, UseType

repo_id_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$",
    "Use namespace/name: letters, digits, '.', '_' or '-', "
    "each part starting with a letter or digit.",
)
revision_validator = RegexValidator(r"^[0-9a-f]{40}$", "A revision is 40 lower-case hex digits.")
sha256_validator = RegexValidator(r"^[0-9a-f]{64}$", "A sha256 is 64 lower-case hex digits.")


class CatalogModel(models.Model):
    """One entry users browse: a repo-style id whose pinned versions sit underneath."""

    class Modality(models.TextChoices):
        TEXT = "text", "Text"
        VISION = "vision", "Vision"
        AUDIO = "audio", "Audio"
        TABULAR = "tabular", "Tabular"
        MULTIMODAL = "multimodal", "Multimodal"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        AVAILABLE = "available", "Available"
        DEPRECATED = "deprecated", "Deprecated"
        BLOCKED = "blocked", "Blocked"

    repo_id = models.CharField(max_length=193, unique=True, validators=[repo_id_validator])
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True)
    modality = models.CharField(max_length=12, choices=Modality.choices, default=Modality.TEXT)
    task = models.CharField(
        max_length=64, blank=True, help_text="Pipeline tag, e.g. text-classification."
    )
    architecture = models.CharField(max_length=100, blank=True)
    parameter_count = models.BigIntegerField(null=True, blank=True)
    domain_tags = models.JSONField(default=list, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    status_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["repo_id"]
        indexes = [
            models.Index(fields=["status", "modality"], name="catalog_status_modality"),
            models.Index(fields=["task"], name="catalog_task"),
            models.Index(fields=["-updated_at"], name="catalog_recent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["draft", "available", "deprecated", "blocked"]),
                name="catalogmodel_status_valid",
            )
        ]

    def __str__(self) -> str:
        return self.repo_id

    def get_absolute_url(self) -> str:
        return reverse("zoo:model", kwargs={"namespace": self.namespace, "name": self.name})

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repo_id.split("/", 1)[1]


class SearchEntry(models.Model):
    """The text catalogue search matches for one model, in its own table so list rows stay narrow.

    Three fields rank in this order: ``name`` (repo id words and title),
    ``meta`` (summary, task, architecture, tags) and ``card`` (the latest
    version's card text). Kept by ``zoo.services.catalogue`` on every change.
    On PostgreSQL the table also has a GIN index over the tsvector of all
    three and a generated ``head`` tsvector (name and meta, weighted, to rank
    without reading card text); on SQLite an FTS5 index (``zoo_catalogsearch_fts``) follows it by
    triggers. Django models neither: ``zoo.selectors.search`` reaches them.
    """

    model = models.OneToOneField(
        CatalogModel, primary_key=True, on_delete=models.CASCADE, related_name="search_entry"
    )
    name = models.TextField()
    meta = models.TextField(blank=True)
    card = models.TextField(blank=True)

    class Meta:
        db_table = "zoo_catalogsearch"

    def __str__(self) -> str:
        return self.name


class SearchWord(models.Model):
    """A word of some model's name: what a misspelt search is corrected to.

    Only ever added to (a word of a renamed model that lingers corrects a
    query to words that then match nothing, which is what the user typed
    anyway). On PostgreSQL a trigram index (pg_trgm) finds the closest.
    """

    word = models.CharField(max_length=100, primary_key=True)

    class Meta:
        db_table = "zoo_searchword"

    def __str__(self) -> str:
        return self.word


class ModelVersion(models.Model):
    """A pinned, immutable revision of a catalogue model: its files never change."""

    class Kind(models.TextChoices):
        BASE = "base", "Base"
        FINETUNED = "finetuned", "Fine-tuned"
        ADAPTER = "adapter", "Adapter"

    class Source(models.TextChoices):
        HUB = "hub", "Hugging Face Hub"
        FOLDER = "folder", "Server folder"
        ARCHIVE = "archive", "Uploaded archive"
        FINETUNE = "finetune", "Fine-tune job"
        CONVERSION = "conversion", "Converted to safetensors"

    class Status(models.TextChoices):
        AVAILABLE = "available", "Available"
        BLOCKED = "blocked", "Blocked"

    # Fields fixed at import; the rest is metadata stewards may correct.
    PINNED = ("model_id", "revision", "parent_id", "kind", "source", "total_size", "file_count")

    model = models.ForeignKey(CatalogModel, on_delete=models.PROTECT, related_name="versions")
    revision = models.CharField(
        max_length=40,
        validators=[revision_validator],
        help_text="Hub commit sha, or a content hash over the files for local imports.",
    )
    label = models.CharField(max_length=40, help_text="Human label, v1, v2… in import order.")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.BASE)
    license = models.ForeignKey(License, on_delete=models.PROTECT, related_name="versions")
    license_raw = models.CharField(
        max_length=200, blank=True, help_text="The license as the card stated it."
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    source_repo = models.CharField(max_length=300, blank=True)
    source_revision = models.CharField(max_length=100, blank=True)
    provenance = models.JSONField(
        default=dict,
        blank=True,
        help_text="datasets, training data, paper, languages, library, base model as stated.",
    )
    bias_notes = models.TextField(blank=True)
    limitations = models.TextField(blank=True)
    card_markdown = models.TextField(blank=True)
    card_metadata = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    total_size = models.BigIntegerField(default=0)
    file_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.AVAILABLE)
    block_reasons = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_id", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "revision"], name="version_unique_revision"),
            models.UniqueConstraint(fields=["model", "label"], name="version_unique_label"),
            models.CheckConstraint(
                condition=~models.Q(parent=models.F("id")), name="version_not_own_parent"
            ),
        ]
        permissions = [
            ("download_files", "Can download the files of this version"),
            ("finetune_version", "Can fine-tune this version"),
        ]
        indexes = [
            models.Index(fields=["model", "-created_at"], name="version_model_recent"),
            models.Index(fields=["-created_at", "-id"], name="version_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.model.repo_id}@{self.revision[:10]}"

    def save(self, *args, **kwargs) -> None:
        pinned = getattr(self, "_pinned", None)
        if pinned:
            changed = [f for f, v in pinned.items() if getattr(self, f) != v]
            if changed:
                raise ValidationError(
                    f"A version is immutable; cannot change {', '.join(changed)}."
                )
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return f"{self.model.get_absolute_url()}?{urlencode({'version': self.label})}"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._pinned = {f: getattr(instance, f) for f in cls.PINNED if f in instance.__dict__}
        return instance

    @property
    def is_blocked(self) -> bool:
        return self.status == self.Status.BLOCKED


class Artifact(models.Model):
    """One file of a version, stored once by content hash and never overwritten."""

    class Format(models.TextChoices):
        SAFETENSORS = "safetensors", "safetensors"
        PICKLE = "pickle", "pickle"
        ONNX = "onnx", "ONNX"
        CONFIG = "config", "config"
        TOKENIZER = "tokenizer", "tokenizer"
        OTHER = "other", "other"

    class Scan(models.TextChoices):
        CLEAN = "clean", "Clean"
        DANGEROUS = "dangerous", "Dangerous"
        UNSCANNABLE = "unscannable", "Unscannable"
        NOT_APPLICABLE = "not_applicable", "Not scanned (not code-bearing)"

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="artifacts")
    path = models.CharField(max_length=500)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    git_sha1 = models.CharField(max_length=40, help_text="Git blob id, as the Hub reports it.")
    format = models.CharField(max_length=12, choices=Format.choices)
    scan_status = models.CharField(max_length=16, choices=Scan.choices)
    scan_findings = models.JSONField(default=list, blank=True)
    detected = models.CharField(
        max_length=200, blank=True, help_text="What the scan found the bytes to be, in words."
    )
    blob_name = models.CharField(max_length=200, help_text="Name in the artifact storage.")

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["version", "path"], name="artifact_unique_path")
        ]
        indexes = [models.Index(fields=["sha256"], name="artifact_sha256")]

    def __str__(self) -> str:
        return self.path

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValidationError("Artifacts are immutable once recorded.")
        super().save(*args, **kwargs)

    @property
    def blocks(self) -> bool:
        return self.scan_status in (self.Scan.DANGEROUS, self.Scan.UNSCANNABLE)


SCAN_WAIVER_MAX_DAYS = 365


class ScanWaiverQuerySet(models.QuerySet):
    def live(self, now=None):
        """Waivers in force: neither revoked nor past their expiry."""
        return self.filter(revoked_at__isnull=True, expires_at__gt=now or timezone.now())


class ScanWaiver(models.Model):
    """A steward's decision that one file, named by its sha256, may be used although its
    scan blocks it (a scikit-learn pickle the team trusts, say), until ``expires_at``.

    Bound to the bytes, never to a name or a version: the same file under another
    path or in another version is covered, a single changed byte is not. There is no
    global switch. A waiver ends by expiry or revocation, and a new one can be
    granted; rows are kept, so the version page and the audit log show the history.
    """

    sha256 = models.CharField(max_length=64, validators=[sha256_validator])
    reason = models.TextField()
    scan_status = models.CharField(max_length=16, choices=Artifact.Scan.choices)
    findings = models.JSONField(
        default=list, blank=True, help_text="What the scan reported when the waiver was granted."
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoke_reason = models.TextField(blank=True)
    # Set once the versions holding the file have been re-blocked after expiry.
    lapsed_at = models.DateTimeField(null=True, blank=True)

    objects = ScanWaiverQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["sha256", "-expires_at"], name="waiver_sha256")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("created_at")),
                name="waiver_expires_after_creation",
            ),
            models.UniqueConstraint(
                fields=["sha256"],
                condition=models.Q(revoked_at__isnull=True, lapsed_at__isnull=True),
                name="waiver_one_open_per_file",
            ),
        ]

    def __str__(self) -> str:
        return f"waiver for {self.sha256[:12]}…"

    def is_live(self, now=None) -> bool:
        return self.revoked_at is None and self.expires_at > (now or timezone.now())


class VersionHoldQuerySet(models.QuerySet):
    def live(self):
        return self.filter(lifted_at__isnull=True)


class VersionHold(models.Model):
    """A hold placed on a version from outside its files: an incident's recall, say.

    A blocking hold adds its reason to the version's block reasons (so every
    path that serves or uses the version refuses it); a flag only marks the
    version where it appears. Holds are lifted, never deleted, so the history
    stays. ``source`` names what placed it (``incident:12``) and lifts it again.
    """

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="holds")
    source = models.CharField(max_length=64)
    reason = models.TextField()
    blocks = models.BooleanField(help_text="Block the version, or only flag it.")
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    placed_at = models.DateTimeField()
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects = VersionHoldQuerySet.as_manager()

    class Meta:
        ordering = ["-placed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "source"],
                condition=models.Q(lifted_at__isnull=True),
                name="hold_one_live_per_source",
            )
        ]

    def __str__(self) -> str:
        return f"{'block' if self.blocks else 'flag'} on {self.version_id} ({self.source})"


dataset_name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
    "Use letters, digits, '.', '_' or '-', starting with a letter or digit.",
)


class Dataset(models.Model):
    """A named target dataset owned by one user; each upload is a version pinned by its hash."""

    class Modality(models.TextChoices):
        TEXT = "text", "Text classification"
        VISION = "vision", "Image classification"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets"
    )
    name = models.CharField(max_length=100, validators=[dataset_name_validator])
    description = models.TextField(blank=True)
    modality = models.CharField(max_length=10, choices=Modality.choices)
    sensitivity = models.CharField(max_length=12, choices=Sensitivity.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="dataset_unique_owner_name"),
            models.CheckConstraint(
                condition=models.Q(modality__in=["text", "vision"]), name="dataset_modality_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    sensitivity__in=["public", "internal", "confidential", "restricted"]
                ),
                name="dataset_sensitivity_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.owner.get_username()}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("datasets:detail", kwargs={"pk": self.pk})


class DatasetVersion(models.Model):
    """One uploaded file of a dataset, identified by its sha256: the same file is the same version.

    The counts and the sample are computed once at upload by the same reader the
    workers use, so pages never re-read the file.
    """

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        TSV = "tsv", "TSV"
        JSONL = "jsonl", "JSON Lines"
        ZIP = "zip", "Zip of image folders"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    label = models.CharField(max_length=20)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    format = models.CharField(max_length=8, choices=Format.choices)
    original_name = models.CharField(max_length=255, blank=True)
    blob_name = models.CharField(max_length=200, help_text="Name in the artifact storage.")
    text_column = models.CharField(max_length=200, blank=True)
    label_column = models.CharField(max_length=200, blank=True)
    slice_column = models.CharField(max_length=200, blank=True)
    time_column = models.CharField(max_length=200, blank=True)
    columns = models.JSONField(default=list, blank=True)
    n_rows = models.PositiveIntegerField()
    label_counts = models.JSONField(default=dict)
    sample = models.JSONField(default=list, blank=True, help_text="A few rows, for the page.")
    warnings = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset_id", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "sha256"], name="datasetversion_unique_file"
            ),
            models.UniqueConstraint(
                fields=["dataset", "label"], name="datasetversion_unique_label"
            ),
        ]
        indexes = [models.Index(fields=["sha256"], name="datasetversion_sha256")]

    def __str__(self) -> str:
        return f"{self.dataset} {self.label}"

    @property
    def n_classes(self) -> int:
        return len(self.label_counts)


class CardRevision(models.Model):
    """One saved text of a version's model card: who wrote it, when and why.

    ``markdown`` is the whole card as a steward edits it, YAML front matter
    included, so two revisions diff as the person saw them. Number 1 is the
    card as imported; ``zoo.services.card_revisions`` writes it the first time
    the card is edited (see there why then). Rows are never changed.
    """

    version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="card_revisions"
    )
    number = models.PositiveIntegerField()
    markdown = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty for the system: the card as imported.",
    )
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["version_id", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "number"], name="cardrevision_unique_number"
            ),
            models.CheckConstraint(
                condition=models.Q(number__gte=1), name="cardrevision_number_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"card revision {self.number} of version {self.version_id}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValidationError("A card revision is history; it is never changed.")
        super().save(*args, **kwargs)


class CardRequirement(models.Model):
    """A section a model card must have before its model may enter a lifecycle state.

    Policy data, edited by staff in the admin. A card has the section when one
    of its headings names it (``zoo.selectors.cards.heading_names``
    says how headings are matched); ``also_accepted`` lists other headings that
    count, such as "Uses" for "Intended use".
    """

    class State(models.TextChoices):
        PUBLISHED = "published", "Published (a draft made available)"

    state = models.CharField(max_length=16, choices=State.choices, default=State.PUBLISHED)
    heading = models.CharField(max_length=100, help_text="The section, as a card heading names it.")
    also_accepted = models.TextField(
        blank=True, help_text="Other headings that count as this section, one per line."
    )
    help_text = models.TextField(
        blank=True, help_text="What the section should say; shown to stewards editing a card."
    )
    position = models.PositiveSmallIntegerField(default=0, help_text="Order in the lists.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["state", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["state", "heading"], name="cardrequirement_unique_heading"
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=["published"]), name="cardrequirement_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.heading} ({self.get_state_display().lower()})"

    @property
    def accepted_headings(self) -> list[str]:
        return [self.heading, *(h.strip() for h in self.also_accepted.splitlines() if h.strip())]


class ReleaseCheck(models.Model):
    """One release check of one version (calibration, leakage...): what it measured, its verdict.

    Run as a job (``jobs.workers.release_checks``); the publish gate and the reuse
    policy read the latest finished check of each kind on a version. ``measure``
    is the one figure judged against ``threshold`` (in the kind's direction, see
    ``DIRECTIONS``), so a rule with another threshold can judge a stored result
    again without re-running it. ``job_id`` names the job (a plain id: zoo does
    not reach into jobs).
    """

    class Kind(models.TextChoices):
        CALIBRATION = "calibration", "Calibration and decision threshold"
        LEAKAGE = "leakage", "Train/test leakage"
        FORGETTING = "forgetting", "Forgetting (representation change)"
        SERVING = "serving", "Serving compatibility (ONNX)"
        ASSOCIATION = "association", "Bias: word-association tests"
        SLICES = "slices", "Bias: gaps between slices"
        INCONSISTENCY = "inconsistency", "Inconsistency with another version"
        DRIFT = "drift", "Drift of production inputs"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        ERROR = "error", "Could not run"

    FINISHED = (Status.PASSED, Status.FAILED, Status.ERROR)
    # kind -> (what the measure is, "max" when lower is better, "min" when higher is)
    DIRECTIONS = {
        Kind.CALIBRATION: ("ECE on the test split after temperature scaling", "max"),
        Kind.LEAKAGE: ("share of test rows that duplicate a training row", "max"),
        Kind.FORGETTING: ("lowest per-layer linear CKA with the base", "min"),
        Kind.SERVING: (
            "largest absolute difference of probabilities (of hidden states for a base "
            "model), ONNX Runtime vs PyTorch",
            "max",
        ),
        Kind.ASSOCIATION: (
            "largest absolute WEAT/SEAT effect size among the tests significant at alpha "
            "(Holm-adjusted p-values)",
            "max",
        ),
        Kind.SLICES: (
            "largest gap between slices in accuracy, recall or false-positive rate",
            "max",
        ),
        Kind.INCONSISTENCY: ("share of inputs whose predicted label changes", "max"),
        Kind.DRIFT: ("PSI of the predicted class distribution, newest batch", "max"),
    }
    DEFAULT_THRESHOLDS = {
        Kind.CALIBRATION: 0.1,
        Kind.LEAKAGE: 0.0,
        Kind.FORGETTING: 0.5,
        Kind.SERVING: 1e-3,
        Kind.ASSOCIATION: 0.8,
        Kind.SLICES: 0.1,
        Kind.INCONSISTENCY: 0.1,
        Kind.DRIFT: 0.25,
    }

    version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="release_checks"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, blank=True, help_text="What the launcher asked for.")
    threshold = models.FloatField(help_text="The threshold the verdict was reached against.")
    measure = models.FloatField(null=True, blank=True, help_text="The figure judged.")
    passed = models.BooleanField(null=True, blank=True)
    summary = models.TextField(
        blank=True, help_text="What it measured and what it did not, in plain words."
    )
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    seconds = models.FloatField(null=True, blank=True, help_text="Wall time of the check.")
    job_id = models.PositiveBigIntegerField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["version_id", "kind", "-created_at", "-id"]
        indexes = [
            models.Index(fields=["version", "kind", "-created_at"], name="releasecheck_latest")
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    kind__in=[
                        "calibration",
                        "leakage",
                        "forgetting",
                        "serving",
                        "association",
                        "slices",
                        "inconsistency",
                        "drift",
                    ]
                ),
                name="releasecheck_kind_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["queued", "running", "passed", "failed", "error"]),
                name="releasecheck_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} check #{self.pk} of version {self.version_id}"

    @property
    def measure_name(self) -> str:
        return self.DIRECTIONS[self.kind][0]

    def passes(self, threshold: float | None = None) -> bool:
        """Whether the stored measure meets ``threshold`` (default: the one it ran against)."""
        if self.status not in (self.Status.PASSED, self.Status.FAILED) or self.measure is None:
            return False
        limit = self.threshold if threshold is None else threshold
        if self.DIRECTIONS[self.kind][1] == "max":
            return self.measure <= limit
        return self.measure >= limit


class ReleaseCheckRule(models.Model):
    """Policy data: a release check a version needs before publishing, or before a use type.

    With no use types the check must have passed on a model's latest version before
    it is published; with use types, on a version before a reuse request for one of
    them is taken. Edited by staff in the admin, audited like every policy table.
    An empty threshold takes the check kind's default.
    """

    kind = models.CharField(max_length=20, choices=ReleaseCheck.Kind.choices)
    use_types = models.JSONField(
        default=list, blank=True, help_text="Use types it applies to; empty: before publishing."
    )
    threshold = models.FloatField(null=True, blank=True, help_text="Empty for the default.")
    reason = models.CharField(max_length=300, blank=True, help_text="Shown when it refuses.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    kind__in=[
                        "calibration",
                        "leakage",
                        "forgetting",
                        "serving",
                        "association",
                        "slices",
                        "inconsistency",
                        "drift",
                    ]
                ),
                name="releasecheckrule_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        where = ", ".join(self.use_types) if self.use_types else "publishing"
        return f"{self.get_kind_display()} for {where}"

    @property
    def limit(self) -> float:
        if self.threshold is not None:
            return self.threshold
        return ReleaseCheck.DEFAULT_THRESHOLDS[self.kind]

    def clean(self) -> None:
        unknown = sorted(set(self.use_types or []) - set(UseType.values))
        if unknown:
            raise ValidationError(
                {"use_types": f"Unknown use type {unknown[0]!r}; use {', '.join(UseType.values)}."}
            )


def _word_list_errors(value, label: str, minimum: int) -> str | None:
    if not isinstance(value, list) or any(not isinstance(w, str) or not w.strip() for w in value):
        return f"The {label} must be a list of words."
    if len({w.strip() for w in value}) < minimum:
        return f"The {label} needs at least {minimum} different words."
    return None


class AssociationTestSet(models.Model):
    """Policy data: one word-association test (two target sets, two attribute sets) run by
    the association release check.

    Seeded with the ten tests of Caliskan et al. (2017) from ``zoo/data/association_sets.json``;
    stewards add, change or switch off tests (audited through
    ``zoo.services.release_checks.association_test_set_save``).
    """

    name = models.SlugField(max_length=60, unique=True, help_text="Short id, e.g. weat-6.")
    title = models.CharField(max_length=200)
    target_x_name = models.CharField(max_length=60)
    target_x = models.JSONField(default=list, help_text="Target words X (a list).")
    target_y_name = models.CharField(max_length=60)
    target_y = models.JSONField(default=list, help_text="Target words Y (a list).")
    attribute_a_name = models.CharField(max_length=60)
    attribute_a = models.JSONField(default=list, help_text="Attribute words A (a list).")
    attribute_b_name = models.CharField(max_length=60)
    attribute_b = models.JSONField(default=list, help_text="Attribute words B (a list).")
    source = models.TextField(help_text="Where the word lists come from (the citation).")
    active = models.BooleanField(default=True, help_text="Run by default in association checks.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        errors = {}
        for field, label, minimum in (
            ("target_x", "target words X", 2),
            ("target_y", "target words Y", 2),
            ("attribute_a", "attribute words A", 1),
            ("attribute_b", "attribute words B", 1),
        ):
            problem = _word_list_errors(getattr(self, field), label, minimum)
            if problem:
                errors[field] = problem
            else:
                setattr(self, field, [w.strip() for w in getattr(self, field)])
        if errors:
            raise ValidationError(errors)

    def word_sets(self) -> dict[str, list[str]]:
        return {
            "x": list(self.target_x),
            "y": list(self.target_y),
            "a": list(self.attribute_a),
            "b": list(self.attribute_b),
        }
