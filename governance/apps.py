from django.apps import AppConfig
from django.db.models.signals import post_migrate


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        from governance.database import grant_app_role

        # After the last app's migrations too: every app sends post_migrate.
        post_migrate.connect(grant_app_role, dispatch_uid="governance.grant_app_role")
