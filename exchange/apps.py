from django.apps import AppConfig


class ExchangeConfig(AppConfig):
    name = "exchange"
    verbose_name = "Exchange"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from exchange import local_cache
        from exchange.api import lookups

        lookups.connect_signals()  # the API's in-process caches, invalidated where the data changes
        # a rebuilt database (migrate, flush between tests) leaves nothing cached from the old one
        post_migrate.connect(lambda **kwargs: local_cache.clear_all(), weak=False,
                             dispatch_uid="local-cache-clear")
