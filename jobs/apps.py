from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Handlers register their job kinds on import.
        from jobs import handlers  # noqa: F401
