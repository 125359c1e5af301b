from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Workers register their job kinds on import.
        from jobs import workers  # noqa: F401
