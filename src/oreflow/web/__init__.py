"""The web dashboard: `create_app(data_dir)` builds the FastAPI app `oreflow serve` runs."""

from __future__ import annotations


def create_app(*args, **kwargs):
    """See `oreflow.web.app.create_app` (imported lazily: FastAPI loads only when needed)."""
    from oreflow.web.app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["create_app"]
