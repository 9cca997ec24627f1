"""Static files as production serves them: collected, hashed and compressed once collectstatic has run.

A server started with DEBUG off before `collectstatic` (a bare `uvicorn` or `manage.py runserver`
rather than `make serve`) found no manifest, and every page naming a static file (the admin, the
user's pages, the API docs) was a 500 ("Missing staticfiles manifest entry"). Without a manifest,
this storage names the apps' own files as they are, and settings let WhiteNoise serve them from the
apps (WHITENOISE_USE_FINDERS): slower to start and uncached, but every page works; a system check
warns (core.W001) until collectstatic is run.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage

MANIFEST = "staticfiles.json"


class ManifestOrAppFilesStorage(CompressedManifestStaticFilesStorage):
    def stored_name(self, name):
        if not self.hashed_files:  # no manifest: collectstatic has not run here
            return name
        return super().stored_name(name)
