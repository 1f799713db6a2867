import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sessionctx.settings")

app = Celery("sessionctx")
# Every CELERY_* Django setting configures the app (see settings.py).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _in_process_transport(sender, **kwargs):
    # No broker (the embedded default): tasks run eagerly, but Celery still takes a producer from its pool
    # for each call, whose connection would default to an AMQP URL with no host (and log a warning about it).
    if not sender.conf.broker_url:
        sender.conf.broker_url = "memory://"
