import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sessionctx.settings")
application = get_asgi_application()

from contexts.infra.database import limit_web_database_waits  # noqa: E402  (needs the settings above)

# Here and not in settings: the statement timeout is for requests, not for migrations, commands or workers.
limit_web_database_waits()
