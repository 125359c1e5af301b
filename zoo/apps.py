from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _search_settings(sender, connection, **kwargs) -> None:
    """What catalogue search's spelling correction needs from each new database connection.

    PostgreSQL: pg_trgm's ``%`` operator (the one its index serves) reads its
    bar from a session setting, set here once per connection. SQLite has no
    pg_trgm: a Python stand-in for ``similarity`` is registered.
    """
    from zoo.selectors.search import SIMILARITY, similarity

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('pg_trgm.similarity_threshold', %s, false)", [str(SIMILARITY)]
            )
    elif connection.vendor == "sqlite":
        connection.connection.create_function("zoo_similarity", 2, similarity, deterministic=True)


class ZooConfig(AppConfig):
    name = "zoo"
    verbose_name = "Catalogue"

    def ready(self) -> None:
        connection_created.connect(_search_settings, dispatch_uid="zoo-search-settings")
