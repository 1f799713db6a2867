"""The project's routes plus /bench/bare: constant JSON through the same server and middleware.

Only bench.settings loads this URLconf; production has no such route.
"""

from django.http import JsonResponse
from django.urls import path

from bench.floor_wsgi import BARE_BODY
from contexts.readcache.client import client
from sessionctx.urls import urlpatterns as project_urlpatterns


def bare(request):
    return JsonResponse(BARE_BODY)


def bare_redis(request):
    """Bare plus one Redis GET: the floor for any read that checks shared state (throttle, revocation).

    Through the read cache's own redis-py client (Django's cache.get costs more: a new client object and
    pickling per call), so the floor is not flattered.
    """
    client().get("bench:nothing")
    return JsonResponse(BARE_BODY)


urlpatterns = [path("bench/bare", bare), path("bench/bare-redis", bare_redis), *project_urlpatterns]
