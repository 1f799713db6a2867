from django.apps import AppConfig


class ContextsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "contexts"
    verbose_name = "Session contexts"

    def ready(self) -> None:
        from django.conf import settings

        if settings.CELERY_BROKER_URL:
            # Otherwise the first extraction a web process sends imports the broker's client (kombu's Redis
            # transport, redis-py: 50-80 ms) inside that request. Resolving the transport imports it; nothing
            # connects here.
            from sessionctx.celery import app

            app.connection_for_write().transport  # noqa: B018
