"""Static files: WhiteNoise's compressed manifest storage once `collectstatic` has run, plain names before."""

from __future__ import annotations

from django.contrib.staticfiles.storage import StaticFilesStorage
from whitenoise.storage import CompressedManifestStaticFilesStorage


class ManifestWhenCollected(CompressedManifestStaticFilesStorage):
    """Content-hashed names (cached for good by browsers) from the manifest `collectstatic` writes.

    Without a manifest (tests, `make run`, a first start before collectstatic) the plain names are linked and
    WhiteNoise serves them from the app folders (WHITENOISE_USE_FINDERS), instead of every page failing on a
    missing manifest entry: collectstatic stays an optimisation, not a requirement.
    """

    def url(self, name: str | None, force: bool = False) -> str:
        if not self.hashed_files:
            return StaticFilesStorage.url(self, name)
        return super().url(name, force)
