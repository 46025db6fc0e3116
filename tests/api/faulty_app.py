"""The real api plus one route that fails inside, to see what a client and the log get from an internal error."""

from __future__ import annotations

from fastapi import FastAPI

from app.main import create_app

SECRET = "db password hunter2 at /srv/secret/config.toml"


def factory() -> FastAPI:
    """uvicorn --factory tests.api.faulty_app:factory"""
    app = create_app()

    @app.get("/v1/fail")
    def fail() -> None:
        raise RuntimeError(SECRET)

    return app
