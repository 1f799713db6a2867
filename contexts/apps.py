from django.apps import AppConfig


class ContextsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "contexts"
    verbose_name = "Session contexts"

    def ready(self) -> None:
        from django.conf import settings

        # The tasks register with the Celery app here, so the job engine can send them by name from any process.
        from . import tasks  # noqa: F401

        if settings.CELERY_BROKER_URL:
            # Otherwise the first extraction a web process sends imports the broker's client inside that
            # request. Resolving the transport imports it; nothing connects here.
            from sessionctx.celery import app

            app.connection_for_write().transport  # noqa: B018
