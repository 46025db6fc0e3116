"""Annotated dependencies: settings, Redis, stores, bearer auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from redis import Redis

from app.api.auth import AUTHORIZED, CLIENT
from soundcheck.datastore import BlobStore, ManifestStore
from soundcheck.settings import Settings
from soundcheck.stores import Stores


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_redis(request: Request) -> Redis:
    return request.app.state.redis


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]


def get_stores(request: Request) -> Stores:
    return request.app.state.stores


StoresDep = Annotated[Stores, Depends(get_stores)]


def get_manifests(redis: RedisDep, stores: StoresDep) -> ManifestStore:
    return stores.manifests(redis)


def get_blobs(stores: StoresDep) -> BlobStore:
    return stores.blobs()


def require_token(request: Request) -> None:
    """The token itself is checked by `app.api.auth.Guard` before the body is read; this refuses a request that
    did not pass through it (a router mounted without the middleware)."""
    if not request.scope.get("state", {}).get(AUTHORIZED):
        raise HTTPException(401, "this api needs a bearer token (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": 'Bearer realm="soundcheck"'})


def get_client(request: Request) -> str:
    """Who the job quota counts: `token:<fingerprint>`, or `ip:<address>` when the api has no tokens."""
    return request.scope.get("state", {}).get(CLIENT) or "ip:unknown"


def is_authorized(request: Request) -> bool:
    """Whether this request may see details (a valid token, or an api without tokens)."""
    return bool(request.scope.get("state", {}).get(AUTHORIZED))


ClientDep = Annotated[str, Depends(get_client)]
AuthorizedDep = Annotated[bool, Depends(is_authorized)]
ManifestsDep = Annotated[ManifestStore, Depends(get_manifests)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
