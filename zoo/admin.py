"""The catalogue and datasets in the admin: for looking, not for changing.

Versions, artifacts and dataset versions are immutable records; models and
datasets change through the portal's own pages, whose services check the
acting user and write the audit event. Nothing here adds, edits or deletes,
except the policy tables kept here: the card sections a card needs
(``CardRequirement``) and the release checks a version needs (``ReleaseCheckRule``),
whose edits go through the audited services.
"""

from django.contrib import admin

from portal.admin import ReadOnlyAdmin
from zoo.models import (
    Artifact,
    AssociationTestSet,
    CardRequirement,
    CardRevision,
    CatalogModel,
    Dataset,
    DatasetVersion,
    ModelVersion,
    ReleaseCheck,
    ReleaseCheckRule,
    ScanWaiver,
)
from zoo.services.card_revisions import card_requirement_delete, card_requirement_save
from zoo.services.release_checks import (
    association_test_set_delete,
    association_test_set_save,
    release_check_rule_delete,
    release_check_rule_save,
)


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    fields = ("label", "revision", "kind", "license", "status", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CatalogModel)
class CatalogModelAdmin(ReadOnlyAdmin):
    list_display = ("repo_id", "title", "modality", "task", "status", "updated_at")
    list_filter = ("status", "modality")
    search_fields = ("repo_id", "title")
    inlines = [ModelVersionInline]


class ArtifactInline(admin.TabularInline):
    model = Artifact
    fields = ("path", "size", "sha256", "format", "scan_status")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "label", "kind", "license", "status", "created_at")
    list_filter = ("status", "kind", "license__category")
    list_select_related = ("model", "license")
    search_fields = ("model__repo_id", "revision")
    exclude = ("card_markdown",)
    inlines = [ArtifactInline]


@admin.register(Artifact)
class ArtifactAdmin(ReadOnlyAdmin):
    list_display = ("path", "version", "size", "format", "scan_status")
    list_filter = ("format", "scan_status")
    list_select_related = ("version__model",)
    search_fields = ("path", "sha256")


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "modality", "sensitivity", "updated_at")
    list_filter = ("modality", "sensitivity")
    list_select_related = ("owner",)
    search_fields = ("name", "owner__username")


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "format", "n_rows", "sha256", "created_at")
    list_filter = ("format",)
    list_select_related = ("dataset__owner",)
    search_fields = ("sha256", "dataset__name")


@admin.register(ScanWaiver)
class ScanWaiverAdmin(ReadOnlyAdmin):
    """Waivers are granted and revoked on the version page, where the audit event is written."""

    list_display = ["sha256", "scan_status", "granted_by", "created_at", "expires_at", "revoked_at"]
    search_fields = ["sha256", "reason"]


@admin.register(CardRevision)
class CardRevisionAdmin(ReadOnlyAdmin):
    """Revisions are written by the card editor on the version page, with their audit event."""

    list_display = ("version", "number", "author", "reason", "created_at")
    list_select_related = ("version__model", "author")
    search_fields = ("version__model__repo_id", "reason")


@admin.register(CardRequirement)
class CardRequirementAdmin(admin.ModelAdmin):
    """Which sections a card needs before publishing; edits go through the audited services."""

    list_display = ("heading", "state", "position", "active")
    list_filter = ("state", "active")
    list_editable = ("position", "active")

    def save_model(self, request, obj, form, change) -> None:
        card_requirement_save(actor=request.user, requirement=obj)

    def delete_model(self, request, obj) -> None:
        card_requirement_delete(actor=request.user, requirement=obj)

    def delete_queryset(self, request, queryset) -> None:
        for requirement in queryset.order_by("pk"):
            card_requirement_delete(actor=request.user, requirement=requirement)


@admin.register(ReleaseCheckRule)
class ReleaseCheckRuleAdmin(admin.ModelAdmin):
    """Which release checks are required, for publishing or per use type, at which threshold."""

    list_display = ("kind", "use_types", "threshold", "active")
    list_filter = ("kind", "active")

    def save_model(self, request, obj, form, change) -> None:
        release_check_rule_save(actor=request.user, rule=obj)

    def delete_model(self, request, obj) -> None:
        release_check_rule_delete(actor=request.user, rule=obj)

    def delete_queryset(self, request, queryset) -> None:
        for rule in queryset.order_by("pk"):
            release_check_rule_delete(actor=request.user, rule=rule)


@admin.register(AssociationTestSet)
class AssociationTestSetAdmin(admin.ModelAdmin):
    """The word sets the association check runs; edits audited like the policy tables."""

    list_display = ("name", "title", "active", "updated_at")
    list_filter = ("active",)
    search_fields = ("name", "title", "source")

    def save_model(self, request, obj, form, change) -> None:
        association_test_set_save(actor=request.user, test_set=obj)

    def delete_model(self, request, obj) -> None:
        association_test_set_delete(actor=request.user, test_set=obj)

    def delete_queryset(self, request, queryset) -> None:
        for test_set in queryset.order_by("pk"):
            association_test_set_delete(actor=request.user, test_set=test_set)


@admin.register(ReleaseCheck)
class ReleaseCheckAdmin(ReadOnlyAdmin):
    """Check results are written by their jobs; here they are listed."""

    list_display = ("version", "kind", "status", "measure", "threshold", "finished_at")
    list_filter = ("kind", "status")
    list_select_related = ("version__model",)
