"""Annotated dependencies: settings, Redis, stores, bearer auth."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from redis import Redis

from soundcheck.datastore import BlobStore, ManifestStore
from soundcheck.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_redis(request: Request) -> Redis:
    return request.app.state.redis


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]


def get_manifests(redis: RedisDep, settings: SettingsDep) -> ManifestStore:
    return ManifestStore(redis, settings.data_dir / "datasets")


def get_blobs(settings: SettingsDep) -> BlobStore:
    return BlobStore(settings.blob_dir)


def require_token(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """When SOUNDCHECK_API_TOKEN is set, /v1 needs `Authorization: Bearer <token>`."""
    if settings.api_token is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token, settings.api_token):
        raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer <SOUNDCHECK_API_TOKEN>)")


ManifestsDep = Annotated[ManifestStore, Depends(get_manifests)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
