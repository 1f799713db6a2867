"""A view and a Celery task that fail, for tests/infra/test_sentry.py (served with tests.infra.sentry_settings)."""

from celery import shared_task
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from sessionctx.urls import urlpatterns as app_urlpatterns


class DeliberateFailure(Exception):
    pass


@csrf_exempt
def failing_view(request):
    raise DeliberateFailure("the view failed on purpose")


@shared_task(name="tests.infra.failing_task")
def failing_task(note: str) -> None:
    raise DeliberateFailure(f"the task failed on purpose: {note}")


urlpatterns = [path("test-failure/", failing_view), *app_urlpatterns]
