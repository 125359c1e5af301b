"""What the apps' admin pages share; the portal registers no models of its own."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows records and changes none: their changes go through the services, audited."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
