import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sessionctx.settings")

app = Celery("sessionctx")
# Every CELERY_* Django setting configures the app (see settings.py).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
