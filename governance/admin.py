from django.contrib import admin

from governance.models import AuditEvent, License, PolicyRule, ReuseRequest, Review


@admin.register(License)
class LicenseAdmin(admin.ModelAdmin):
    list_display = ("spdx_id", "name", "category", "commercial_use", "attribution_required")
    list_filter = ("category", "commercial_use")
    search_fields = ("spdx_id", "name")


@admin.register(PolicyRule)
class PolicyRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "outcome", "license_categories", "use_types", "sensitivities", "active")
    list_filter = ("outcome", "active")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Requests, reviews and audit events change only through their services."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ReuseRequest)
class ReuseRequestAdmin(ReadOnlyAdmin):
    list_display = ("id", "requester", "version", "use_type", "status", "expires_at")
    list_filter = ("status", "use_type")


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ("request", "role", "reviewer", "decision", "created_at")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "actor_name", "verb", "target_repr")
    list_filter = ("verb",)
    search_fields = ("actor_name", "target_repr", "target_id")
