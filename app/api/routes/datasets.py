"""Datasets: upload audio files or a zip, register a server directory, read manifests."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile

from app.api.deps import ManifestsDep, RedisDep, SettingsDep, StoresDep
from app.api.problems import errors
from app.datasets import (
    Collected,
    DatasetInUse,
    add_upload,
    delete_dataset,
    finish,
    resolve_allowed,
    scan_directory,
    set_captions,
)
from app.remote_datasets import resolve_allowed_url, scan_objects
from soundcheck.datastore import BlobRefs
from soundcheck.jobspec import DatasetView, RegisterDataset, SetCaptions
from soundcheck.storage import is_url

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.post("", status_code=201, response_model=DatasetView, response_model_exclude_none=True,
             responses=errors(503))
def upload_dataset(
    files: Annotated[list[UploadFile], File(
        min_length=1, description="Audio files and/or zip archives; labels.csv and captions.csv optional")],
    manifests: ManifestsDep,
    redis: RedisDep,
    settings: SettingsDep,
    stores: StoresDep,
    response: Response,
    on_invalid: Annotated[Literal["reject", "skip"], Form()] = "reject",
    name: Annotated[str | None, Form(max_length=200)] = None,
    include_files: bool = False,
) -> DatasetView:
    refs = BlobRefs(redis)
    refs.ensure_indexed(manifests)
    blobs = stores.blobs(refs)
    try:
        collected = Collected()
        for upload in files:
            add_upload(collected, upload.filename or "unnamed", upload.file, blobs, settings)
        manifest = manifests.save(finish(collected, "upload", on_invalid), name=name)
    finally:
        blobs.release()  # whatever the outcome, blobs no dataset references do not stay
    response.headers["Location"] = f"/v1/datasets/{manifest.id}"
    return manifest if include_files else manifest.model_copy(update={"files": None})


@router.post("/register", status_code=201, response_model=DatasetView, response_model_exclude_none=True,
             responses=errors(503))
def register_dataset(
    body: RegisterDataset, manifests: ManifestsDep, settings: SettingsDep, stores: StoresDep, response: Response,
    on_invalid: Literal["reject", "skip"] = "reject",
) -> DatasetView:
    collected = Collected()
    if is_url(body.path):  # an object-store prefix under an allowed s3:// root
        url = resolve_allowed_url(body.path, settings)
        scan_objects(collected, url, stores, settings)
        root, default_name = url, url.rstrip("/").rsplit("/", 1)[-1]
    else:
        local = resolve_allowed(body.path, settings)
        scan_directory(collected, local, settings)
        root, default_name = str(local), local.name
    manifest = manifests.save(finish(collected, "path", on_invalid, root=root), name=body.name or default_name)
    response.headers["Location"] = f"/v1/datasets/{manifest.id}"
    return manifest.model_copy(update={"files": None})


@router.get("", response_model=list[DatasetView], response_model_exclude_none=True, responses=errors(503))
def list_datasets(manifests: ManifestsDep, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[DatasetView]:
    return manifests.list(limit)


@router.get("/{dataset_id}", response_model=DatasetView, response_model_exclude_none=True,
            responses=errors(404, 503))
def get_dataset(dataset_id: str, manifests: ManifestsDep, include_files: bool = True) -> DatasetView:
    manifest = manifests.get(dataset_id)
    if manifest is None:
        raise HTTPException(404, f"dataset {dataset_id!r} not found")
    return manifest if include_files else manifest.model_copy(update={"files": None})


@router.put("/{dataset_id}/captions", response_model=DatasetView, response_model_exclude_none=True,
            responses=errors(400, 404, 503))
def put_captions(dataset_id: str, body: SetCaptions, manifests: ManifestsDep,
                 include_files: bool = False) -> DatasetView:
    """Replace the captions of a dataset's files (what `clap_score` pairs by name). The dataset id stays: captions
    are metadata, like labels; a job that already ran keeps the captions it read."""
    view = set_captions(manifests, dataset_id, body.captions)
    if view is None:
        raise HTTPException(404, f"dataset {dataset_id!r} not found")
    return view if include_files else view.model_copy(update={"files": None})


@router.delete("/{dataset_id}", status_code=204, response_class=Response,
                responses=errors(404, 409, 503))
def remove_dataset(dataset_id: str, redis: RedisDep, settings: SettingsDep, stores: StoresDep) -> Response:
    """Delete a dataset; its blobs go unless another dataset shares them. 409 while a job uses it."""
    try:
        view = delete_dataset(redis, settings, stores, dataset_id)
    except DatasetInUse as exc:
        raise HTTPException(409, str(exc)) from None
    if view is None:
        raise HTTPException(404, f"dataset {dataset_id!r} not found")
    return Response(status_code=204)
