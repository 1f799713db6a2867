import os

from celery import Celery
from celery.signals import after_setup_logger, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sessionctx.settings")

app = Celery("sessionctx")
# Every CELERY_* Django setting configures the app (see settings/celery.py).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _in_process_transport(sender, **kwargs):
    # No broker (the embedded default): tasks run eagerly, but Celery still takes a producer from its pool
    # for each call, whose connection would default to an AMQP URL with no host (and log a warning about it).
    if not sender.conf.broker_url:
        sender.conf.broker_url = "memory://"


@after_setup_logger.connect
def _log_level_from_settings(logger=None, **kwargs):
    # Celery sets the root logger to its own -l level (the Procfile's and the unit's "info"): a worker logs at
    # LOG_LEVEL, as the web does (docs/operations.md).
    from django.conf import settings

    if logger is not None:
        logger.setLevel(settings.LOG_LEVEL)


@worker_ready.connect
def _serve_worker_metrics(sender=None, **kwargs):
    # WORKER_METRICS_PORT: this worker's own figures (model call latency) for Prometheus, behind METRICS_TOKEN.
    from django.conf import settings

    if settings.WORKER_METRICS_PORT:
        from contexts.infra.metrics import serve_worker_metrics

        serve_worker_metrics(settings.WORKER_METRICS_ADDRESS, settings.WORKER_METRICS_PORT)
