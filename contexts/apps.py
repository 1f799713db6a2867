from django.apps import AppConfig


class ContextsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "contexts"
    verbose_name = "Session contexts"

    def ready(self) -> None:
        from django.conf import settings

        # The tasks register with the Celery app here, so the job engine can send them by name from any process.
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_delete

        from . import tasks  # noqa: F401
        from .services.handoff import handoffs_of_deleted_user

        def _user_deleted(sender, instance, **kwargs) -> None:
            # However the account goes (the admin, a shell, a script): its conversations are not left with nobody.
            handoffs_of_deleted_user(user=instance)

        pre_delete.connect(_user_deleted, sender=get_user_model(), dispatch_uid="contexts.handoffs_of_deleted_user",
                           weak=False)

        if settings.CELERY_BROKER_URL:
            # Otherwise the first extraction a web process sends imports the broker's client inside that
            # request. Resolving the transport imports it; nothing connects here.
            from sessionctx.celery import app

            app.connection_for_write().transport  # noqa: B018
