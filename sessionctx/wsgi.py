import os

from django.core.wsgi import get_wsgi_application

from contexts.infra.chunked import ChunkedBodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sessionctx.settings")

# A chunked request body reaches Django with its length (see contexts/infra/chunked.py).
application = ChunkedBodies(get_wsgi_application())

from contexts.infra.database import limit_web_database_waits  # noqa: E402  (needs the settings above)

# Here and not in settings: the statement timeout is for requests, not for migrations, commands or workers.
limit_web_database_waits()

from django.conf import settings  # noqa: E402

if not settings.CELERY_BROKER_URL:
    # The embedded default has no `celery beat`: the web process runs the periodic sweeps itself (in its
    # in-process pool), so idle:S updates, retries after a back-off and resends of lost runs happen here too.
    from contexts.infra.inprocess import start_beat  # noqa: E402

    start_beat()
