from django.contrib import admin

from governance.models import (
    AccessToken,
    AuditEvent,
    Incident,
    License,
    PolicyRule,
    ReuseRequest,
    Review,
    ReviewInterval,
    SsoIdentity,
)
from governance.services.policy import (
    license_save,
    policy_rule_delete,
    policy_rule_save,
    review_interval_save,
)
from governance.services.tokens import access_token_revoke
from portal.admin import ReadOnlyAdmin


@admin.register(License)
class LicenseAdmin(admin.ModelAdmin):
    """Licenses drive the policy: every edit goes through the audited service."""

    list_display = ("spdx_id", "name", "category", "commercial_use", "attribution_required")
    list_filter = ("category", "commercial_use")
    search_fields = ("spdx_id", "name")

    def save_model(self, request, obj, form, change) -> None:
        # The form has set the fields on obj; the service audits before/after and saves.
        license_save(actor=request.user, license=obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # versions reference their license; retire one by editing it instead


@admin.register(PolicyRule)
class PolicyRuleAdmin(admin.ModelAdmin):
    """The reuse policy's rules; edits and deletions go through the audited services."""

    list_display = ("name", "outcome", "license_categories", "use_types", "sensitivities", "active")
    list_filter = ("outcome", "active")

    def save_model(self, request, obj, form, change) -> None:
        policy_rule_save(actor=request.user, rule=obj)

    def delete_model(self, request, obj) -> None:
        policy_rule_delete(actor=request.user, rule=obj)

    def delete_queryset(self, request, queryset) -> None:
        for rule in queryset.order_by("pk"):
            policy_rule_delete(actor=request.user, rule=rule)


@admin.register(ReviewInterval)
class ReviewIntervalAdmin(admin.ModelAdmin):
    """How often published versions are re-attested; edits go through the audited service.

    Rows are deactivated rather than deleted, so a schedule's history stays explainable."""

    list_display = ("name", "days", "license_categories", "min_risk", "overdue_suspends_approvals")
    list_filter = ("active", "overdue_suspends_approvals")

    def save_model(self, request, obj, form, change) -> None:
        review_interval_save(actor=request.user, interval=obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    """Incidents are worked on their own pages (recall, lift, playbook); here they are listed."""

    list_display = ("id", "title", "version", "category", "severity", "status", "opened_at")
    list_filter = ("status", "category", "severity")


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


@admin.register(AccessToken)
class AccessTokenAdmin(ReadOnlyAdmin):
    """Staff see every token (never a secret) and can revoke them, e.g. after a leak."""

    list_display = ("prefix", "name", "user", "created_at", "expires_at", "last_used_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "user__username")
    exclude = ("digest",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True).order_by("pk"):
            access_token_revoke(token=token, actor=request.user)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).")


@admin.register(SsoIdentity)
class SsoIdentityAdmin(ReadOnlyAdmin):
    """Who signs in through the provider as whom, and the roles single sign-on gave them."""

    list_display = ("user", "issuer", "subject", "roles", "last_sign_in_at")
    search_fields = ("user__username", "subject")
