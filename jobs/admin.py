"""Jobs and runs in the admin: their rows are the record of what ran, shown and never edited."""

from django.contrib import admin

from jobs.models import FineTuneRun, Job, ProbeRun, Study
from portal.admin import ReadOnlyAdmin


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "status", "requested_by", "queue", "progress", "created_at")
    list_filter = ("status", "kind", "queue")
    search_fields = ("id", "requested_by__username", "celery_task_id")


@admin.register(ProbeRun)
class ProbeRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "dataset_version", "requested_by", "n_examples", "created_at")
    list_select_related = ("dataset_version__dataset__owner", "requested_by")


@admin.register(FineTuneRun)
class FineTuneRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "base_version", "dataset_version", "strategy", "output_version")
    list_filter = ("strategy", "split")
    list_select_related = (
        "base_version__model",
        "dataset_version__dataset__owner",
        "output_version__model",
    )


@admin.register(Study)
class StudyAdmin(ReadOnlyAdmin):
    list_display = ("id", "probe", "k", "requested_by", "status", "chosen_run", "created_at")
    list_filter = ("status",)
    list_select_related = ("probe__dataset_version__dataset__owner", "requested_by", "chosen_run")
    search_fields = ("id", "requested_by__username", "reason", "choice_reason")
