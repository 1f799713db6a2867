import os

from django.core.wsgi import get_wsgi_application

from contexts.infra.chunked import ChunkedBodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sessionctx.settings")

# A chunked request body reaches Django with its length (see contexts/infra/chunked.py).
application = ChunkedBodies(get_wsgi_application())

from contexts.infra.database import limit_web_database_waits  # noqa: E402  (needs the settings above)

# Here and not in settings: the statement timeout is for requests, not for migrations, commands or workers.
limit_web_database_waits()
