from django.apps import AppConfig


class ContextsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "contexts"
    verbose_name = "Session contexts"
