from django.apps import AppConfig
from django.db.models.signals import post_migrate


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from governance.database import grant_app_role

        # After the last app's migrations too: every app sends post_migrate.
        post_migrate.connect(grant_app_role, dispatch_uid="governance.grant_app_role")

        from governance.services.standing import on_version_standing_changed
        from zoo.services.events import version_standing_changed

        # A license or block change in zoo sends the approvals on it back to review.
        version_standing_changed.connect(
            on_version_standing_changed, dispatch_uid="governance.standing_changed"
        )
