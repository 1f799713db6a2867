"""Settings for sessionctx, read from environment variables (see README.md and .env.example).

DJANGO_SETTINGS_MODULE stays `sessionctx.settings`; the settings live in a module per part, each naming what it
exports in `__all__`:

- `env.py`: the typed readers of environment variables (`env_bool`, `env_int`, `env_secret`, ...).
- `security.py`: DEBUG, SECRET_KEY, hosts, TLS and cookies, login brute force (django-axes), Content-Security-Policy.
- `core.py`: Django itself: apps, middleware, templates, time zones, static files.
- `database.py`, `cache.py`: DATABASE_URL and CACHE_URL, and the bounds on a connection.
- `api.py`: the REST API and its OpenAPI schema.
- `sessionctx.py`: the model (OPENAI_*) and the SESSIONCTX_* product settings.
- `celery.py`: the broker, task limits (they follow OPENAI_TIMEOUT) and the periodic sweeps.
- `observability.py`: metrics, logging and Sentry.

A part imports what it needs from another (DEBUG, BASE_DIR, OPENAI_TIMEOUT).
"""

# Not in alphabetical order (I001): this is the order in which bad values are reported, DEBUG and SECRET_KEY first,
# and Sentry starts last, once every value has passed. Each part lists its settings in __all__ (F403).
# ruff: noqa: F403, I001
from .security import *
from .core import *
from .database import *
from .cache import *
from .api import *
from .sessionctx import *
from .celery import *
from .observability import *
