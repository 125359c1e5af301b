from django.contrib import admin

from jobs.models import Job


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
