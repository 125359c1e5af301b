from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class Job(models.Model):
    """One unit of background work; this row, not Celery's result backend, is its record."""

    class Kind(models.TextChoices):
        IMPORT = "import", "Import"
        SCAN = "scan", "Scan"
        PROBE = "probe", "Probe"
        FINETUNE = "finetune", "Fine-tune"
        WORKER_CHECK = "worker_check", "Worker check"
        CONVERT = "convert", "Convert to safetensors"
        STUDY_CHOICE = "study_choice", "Test score of a study's choice"
        RELEASE_CHECK = "release_check", "Release check"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        help_text="Empty for jobs the system started itself.",
    )
    queue = models.CharField(max_length=20, default="default")
    celery_task_id = models.CharField(max_length=64, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Incremented by each claim; a stale attempt cannot write."
    )
    max_attempts = models.PositiveIntegerField(default=3)
    progress = models.FloatField(default=0.0, help_text="Share done, 0 to 1.")
    stage = models.CharField(max_length=200, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=255, blank=True)
    device = models.CharField(max_length=255, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(
        null=True, blank=True, help_text="When its message was last handed to the broker."
    )
    sends = models.PositiveIntegerField(
        default=0, help_text="Messages sent for it: the first, then requeues and re-sends."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["requested_by", "-created_at"], name="job_owner_recent"),
            models.Index(fields=["status", "kind"], name="job_status_kind"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1),
                name="job_progress_between_0_and_1",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["queued", "running", "succeeded", "failed", "cancelled"]
                ),
                name="job_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} job #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class FeatureSet(models.Model):
    """Frozen features of one model version on one dataset sample, kept so probes reuse them."""

    version = models.ForeignKey(
        "zoo.ModelVersion", on_delete=models.CASCADE, related_name="feature_sets"
    )
    dataset_version = models.ForeignKey(
        "zoo.DatasetVersion", on_delete=models.CASCADE, related_name="feature_sets"
    )
    preprocessing = models.CharField(
        max_length=200, help_text="Everything that changes the features: pooling, lengths, sizes."
    )
    sample_key = models.CharField(max_length=64, help_text="sha256 of the row indices embedded.")
    n_rows = models.PositiveIntegerField()
    dim = models.PositiveIntegerField()
    blob_name = models.CharField(max_length=200)
    seconds = models.FloatField(help_text="Time the extraction took.")
    device = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["version", "dataset_version", "preprocessing", "sample_key"],
                name="featureset_unique_key",
            )
        ]

    def __str__(self) -> str:
        return f"features of {self.version} on {self.dataset_version} ({self.n_rows}x{self.dim})"


class ProbeRun(models.Model):
    """A transferability probe: one dataset version scored against several candidate versions."""

    class Confidence(models.TextChoices):
        CLEAR = "clear", "First place is ahead beyond noise"
        NEAR_TIE = "near_tie", "Candidates within noise of the top"
        SINGLE = "single", "Only one candidate was scored"

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="probe")
    dataset_version = models.ForeignKey(
        "zoo.DatasetVersion", on_delete=models.PROTECT, related_name="probe_runs"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="probe_runs"
    )
    max_examples = models.PositiveIntegerField()
    seed = models.PositiveIntegerField(default=0)
    n_examples = models.PositiveIntegerField(
        null=True, blank=True, help_text="Rows in the stratified sample actually used."
    )
    recommendation = models.TextField(blank=True)
    max_parameters = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Budget: the largest model acceptable (parameters)."
    )
    max_latency_ms = models.FloatField(
        null=True,
        blank=True,
        help_text="Budget: the slowest acceptable CPU latency per example, in milliseconds.",
    )
    budget_choice = models.ForeignKey(
        "ProbeResult",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The best-ranked candidate that meets every limit of the budget.",
    )
    budget_note = models.TextField(
        blank=True, help_text="Which candidate fits the budget, or which limit excluded what."
    )
    confidence = models.CharField(
        max_length=10, choices=Confidence.choices, blank=True, help_text="Set once ranked."
    )
    confidence_note = models.TextField(blank=True)
    # Each checked candidate costs a brief fine-tune; at most every candidate a probe may have
    # (PROBE_MAX_CANDIDATES' default): on the benchmark checking all of them is what helps.
    SHORTLIST_MAX_K = 10

    shortlist_k = models.PositiveSmallIntegerField(
        default=0,
        help_text="How many of the top candidates a brief fine-tune checks (0: scores only).",
    )
    shortlist_note = models.TextField(
        blank=True, help_text="What the brief fine-tunes did to the order, in words."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(shortlist_k__lte=10), name="proberun_shortlist_k_range"
            ),
            models.CheckConstraint(
                condition=models.Q(max_parameters__isnull=True) | models.Q(max_parameters__gt=0),
                name="proberun_max_parameters_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(max_latency_ms__isnull=True) | models.Q(max_latency_ms__gt=0),
                name="proberun_max_latency_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"Probe #{self.pk} on {self.dataset_version}"

    def get_absolute_url(self) -> str:
        return reverse("probes:detail", kwargs={"pk": self.pk})

    @property
    def has_budget(self) -> bool:
        return self.max_parameters is not None or self.max_latency_ms is not None


class ProbeResult(models.Model):
    """The scores of one candidate in a probe, or why it has none."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(ProbeRun, on_delete=models.CASCADE, related_name="results")
    version = models.ForeignKey(
        "zoo.ModelVersion", on_delete=models.PROTECT, related_name="probe_results"
    )
    position = models.PositiveSmallIntegerField(help_text="Order in which the user listed it.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    logme = models.FloatField(null=True, blank=True)
    knn_accuracy = models.FloatField(null=True, blank=True)
    linear_probe_accuracy = models.FloatField(null=True, blank=True)
    h_score = models.FloatField(null=True, blank=True)
    mmd = models.FloatField(
        null=True, blank=True, help_text="Squared MMD between the data and a reference sample."
    )
    rank = models.PositiveSmallIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    seconds = models.FloatField(null=True, blank=True, help_text="Wall time of this candidate.")
    extraction_seconds = models.FloatField(null=True, blank=True)
    feature_dim = models.PositiveIntegerField(null=True, blank=True)
    cached = models.BooleanField(default=False, help_text="Features came from the cache.")
    parameters = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Parameters of the network that makes the features."
    )
    latency_ms = models.FloatField(
        null=True, blank=True, help_text="Median CPU time of one example's forward pass."
    )
    memory_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Bytes of the parameters in float32."
    )
    cost_method = models.JSONField(
        default=dict, blank=True, help_text="How the latency was measured (threads, repeats...)."
    )
    linear_correct = models.BinaryField(
        null=True, editable=False, help_text="Out-of-fold right/wrong per example, packed bits."
    )
    knn_correct = models.BinaryField(null=True, editable=False)
    gap_low = models.FloatField(
        null=True,
        blank=True,
        help_text="95% bootstrap interval of (top - this) linear-probe accuracy: low end.",
    )
    gap_high = models.FloatField(null=True, blank=True)
    top_holds = models.FloatField(
        null=True,
        blank=True,
        help_text="Share of resamples in which the top one's accuracy is at least this one's.",
    )
    knn_gap_low = models.FloatField(null=True, blank=True)
    knn_gap_high = models.FloatField(null=True, blank=True)
    within_noise = models.BooleanField(
        null=True, blank=True, help_text="Not separated from the top candidate (empty for the top)."
    )
    budget_misses = models.JSONField(
        default=list, blank=True, help_text="The budget limits this candidate breaks, in words."
    )
    score_rank = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Rank by the transferability scores alone."
    )
    brief_accuracy = models.FloatField(
        null=True,
        blank=True,
        help_text="Validation accuracy after a brief full fine-tune on a training subsample.",
    )
    brief_macro_f1 = models.FloatField(null=True, blank=True)
    brief_rows = models.PositiveIntegerField(
        null=True, blank=True, help_text="Training rows the brief fine-tune used."
    )
    brief_val_rows = models.PositiveIntegerField(
        null=True, blank=True, help_text="Validation rows it was scored on."
    )
    brief_epochs = models.PositiveSmallIntegerField(null=True, blank=True)
    brief_cpu_seconds = models.FloatField(
        null=True, blank=True, help_text="CPU time of the brief fine-tune (all threads)."
    )
    brief_seconds = models.FloatField(
        null=True, blank=True, help_text="Wall time of the brief fine-tune."
    )
    brief_error = models.TextField(blank=True, help_text="Why the brief fine-tune did not run.")

    SCORES = ("logme", "knn_accuracy", "linear_probe_accuracy", "h_score", "mmd")

    class Meta:
        ordering = ["run_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "version"], name="proberesult_unique_version"),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "running", "succeeded", "failed"]),
                name="proberesult_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} in probe #{self.run_id}"


class FineTuneRun(models.Model):
    """A fine-tune of one base version on one dataset version, and what came of it."""

    class Strategy(models.TextChoices):
        HEAD = "head", "Head only (frozen backbone)"
        PARTIAL = "partial", "Partial unfreeze (last k layers)"
        FULL = "full", "Full fine-tune"
        LORA = "lora", "LoRA adapter"

    class Split(models.TextChoices):
        STRATIFIED = "stratified", "Stratified random"
        TIME = "time", "By time column (train on earlier, test on later)"
        TEST_FILE = "test_file", "Separate test file"

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="finetune")
    base_version = models.ForeignKey(
        "zoo.ModelVersion", on_delete=models.PROTECT, related_name="finetune_runs"
    )
    dataset_version = models.ForeignKey(
        "zoo.DatasetVersion", on_delete=models.PROTECT, related_name="finetune_runs"
    )
    test_dataset_version = models.ForeignKey(
        "zoo.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="finetune_test_runs",
        help_text="The separate test file, for the test_file split.",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="finetune_runs",
    )
    strategy = models.CharField(max_length=10, choices=Strategy.choices)
    config = models.JSONField(help_text="Every field of jobs.ml.finetune.FineTuneConfig.")
    split = models.CharField(max_length=12, choices=Split.choices)
    split_params = models.JSONField(
        default=dict, blank=True, help_text="test_fraction, val_fraction, seed."
    )
    curves = models.JSONField(
        default=dict,
        blank=True,
        help_text="steps: [[step, loss]…]; epochs: one report per finished epoch.",
    )
    last_checkpoint = models.JSONField(
        default=dict,
        blank=True,
        help_text="name (in storage), sha256, epoch, step, attempt of the newest checkpoint.",
    )
    metrics = models.JSONField(default=dict, blank=True, help_text="Test-split evaluation.")
    baseline = models.JSONField(
        default=dict, blank=True, help_text="The non-transfer baseline on the same split."
    )
    training = models.JSONField(
        default=dict, blank=True, help_text="Split sizes, epochs, steps, time, device, memory."
    )
    emissions = models.JSONField(default=dict, blank=True)
    output_version = models.OneToOneField(
        "zoo.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="finetune_source",
        help_text="The version this run registered; set once, in the same transaction.",
    )
    study = models.ForeignKey(
        "Study",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs",
        help_text="The bake-off this run is part of: trained and validated, scored on test "
        "and registered only if chosen.",
    )
    kept_weights = models.JSONField(
        default=dict,
        blank=True,
        help_text="name (in storage), sha256, size of the best-validation weights a study "
        "run keeps until the study is decided.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(strategy__in=["head", "partial", "full", "lora"]),
                name="finetunerun_strategy_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(split__in=["stratified", "time", "test_file"]),
                name="finetunerun_split_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(split="test_file")
                | models.Q(test_dataset_version__isnull=False),
                name="finetunerun_test_file_given",
            ),
        ]

    def __str__(self) -> str:
        return f"Fine-tune #{self.pk} of {self.base_version} on {self.dataset_version}"

    def get_absolute_url(self) -> str:
        return reverse("finetunes:detail", kwargs={"pk": self.pk})

    @property
    def is_adapter(self) -> bool:
        return self.strategy == self.Strategy.LORA

    @property
    def is_deferred(self) -> bool:
        """A study run: the test split waits until the study chooses it."""
        return self.study_id is not None


class Study(models.Model):
    """A bake-off: a probe's top candidates fine-tuned alike, compared on validation, one chosen."""

    class Status(models.TextChoices):
        OPEN = "open", "Comparing on validation"
        SCORING = "scoring", "Chosen; scoring on test"
        DECIDED = "decided", "Decided and registered"
        CLOSED = "closed", "Closed without a choice"

    probe = models.ForeignKey(ProbeRun, on_delete=models.PROTECT, related_name="studies")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="studies"
    )
    k = models.PositiveSmallIntegerField(help_text="How many of the probe's top candidates.")
    candidates = models.JSONField(
        default=list,
        help_text="Per candidate, in the probe's rank order: version, probe result, rank.",
    )
    reason = models.TextField(
        blank=True, help_text="Why the study was run, in the requester's words."
    )
    config = models.JSONField(help_text="The one recipe every candidate was trained with.")
    split_params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    chosen_run = models.OneToOneField(
        FineTuneRun,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="chosen_in",
    )
    chosen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    choice_reason = models.TextField(blank=True)
    chosen_at = models.DateTimeField(null=True, blank=True)
    final_job = models.OneToOneField(
        Job,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="study_choice",
        help_text="The job that scores the chosen run on test once and registers it.",
    )
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    close_reason = models.TextField(
        blank=True, help_text="Why it was closed without choosing, in their words."
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["open", "scoring", "decided", "closed"]),
                name="study_status_valid",
            ),
            models.CheckConstraint(condition=models.Q(k__gte=2), name="study_k_at_least_two"),
            models.CheckConstraint(
                condition=models.Q(status__in=["open", "closed"])
                | models.Q(chosen_run__isnull=False),
                name="study_choice_recorded",
            ),
        ]

    def __str__(self) -> str:
        return f"Study #{self.pk} of probe #{self.probe_id} (top {self.k})"

    def get_absolute_url(self) -> str:
        return reverse("finetunes:study", kwargs={"pk": self.pk})


class WorkerHeartbeat(models.Model):
    """A worker process that said it was alive, which queues it serves, and when."""

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)
    pid = models.PositiveIntegerField(null=True, blank=True)
    device = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return f"{self.hostname} on {', '.join(self.queues)}"


class PeriodicTaskRun(models.Model):
    """The last run of one periodic (beat) task: proof that beat ticks and a worker runs it."""

    name = models.CharField(max_length=100, unique=True)
    last_started_at = models.DateTimeField()
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_ok = models.BooleanField(default=False)
    last_result = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)
    runs = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} (last {self.last_started_at:%Y-%m-%d %H:%M:%S})"


class DriftBatch(models.Model):
    """One uploaded batch of production inputs of a fine-tuned version, and its drift check.

    The file is kept in the artifact storage under its sha256 (the user's bytes, as
    uploaded) and read again by the drift job with the dataset reader; its release check is
    the ``zoo.ReleaseCheck`` of kind ``drift`` that compares it with the fine-tune's
    training rows (its ``params`` name this batch).
    """

    version = models.ForeignKey(
        "zoo.ModelVersion", on_delete=models.CASCADE, related_name="drift_batches"
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    n_rows = models.PositiveIntegerField(help_text="Non-blank texts, or images, in the file.")
    text_column = models.CharField(max_length=200, blank=True, help_text="Empty for images.")
    # Where the batch carries labels the model was trained on, if it does: the training
    # data's label column of a table, or LABEL_FOLDERS for images in class folders. Empty:
    # unlabelled production inputs, which can be compared but not trained on.
    label_column = models.CharField(max_length=200, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=8)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    blob_name = models.CharField(max_length=200, help_text="Name in the artifact storage.")
    release_check = models.OneToOneField(
        "zoo.ReleaseCheck",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="drift_batch",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    LABEL_FOLDERS = "(class folders)"

    class Meta:
        ordering = ["version_id", "created_at", "id"]
        verbose_name_plural = "drift batches"
        indexes = [models.Index(fields=["version", "created_at"], name="driftbatch_by_version")]
        constraints = [
            models.CheckConstraint(condition=models.Q(n_rows__gte=1), name="driftbatch_has_rows"),
        ]

    def __str__(self) -> str:
        return f"Drift batch #{self.pk} of version {self.version_id} ({self.n_rows} rows)"
