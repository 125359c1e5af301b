from django.contrib import admin

from jobs.models import FineTuneRun, Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "requested_by", "queue", "progress", "created_at")
    list_filter = ("status", "kind", "queue")
    search_fields = ("id", "requested_by__username", "celery_task_id")
    # Jobs change only through their services: the admin shows, it does not edit.
    readonly_fields = [f.name for f in Job._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a job's row is its record; no "delete selected"


@admin.register(FineTuneRun)
class FineTuneRunAdmin(admin.ModelAdmin):
    list_display = ("id", "base_version", "dataset_version", "strategy", "output_version")
    list_filter = ("strategy", "split")
    list_select_related = (
        "base_version__model",
        "dataset_version__dataset__owner",
        "output_version__model",
    )
    # Written by the job's attempt through services only; the admin shows the record.
    readonly_fields = [f.name for f in FineTuneRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a job's row is its record; no "delete selected"
