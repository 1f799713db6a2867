"""Settings for the benchmarks: the project's settings plus a bare endpoint to compare against."""

from sessionctx.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
