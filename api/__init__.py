"""The speechfm HTTP service: transcription, attribution and LUR reports over FastAPI.

`create_app(Settings(...))` builds the app; `speechfm serve` runs it with uvicorn.
"""

from speechfm_api.settings import Settings

__all__ = ["Settings", "create_app"]


def create_app(settings: Settings):
    """Build the FastAPI app for `settings` (imported here so `import speechfm_api` stays light)."""
    from speechfm_api.app import create_app as _create

    return _create(settings)
