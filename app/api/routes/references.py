"""References brought from elsewhere (issue 10.5): list, import peer statistics (fadtk / stable-audio-metrics
npz), export any as npz. Thin: parsing, checks and storage are soundcheck.references."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Path, Query, Response, UploadFile
from pydantic import ValidationError

from app.api.deps import RedisDep, StoresDep
from app.api.problems import errors
from soundcheck.jobspec import REFERENCE_ID, DeclaredProvenance, ReferenceView
from soundcheck.references import LAYOUTS, ReferenceFileError, ReferenceStore

router = APIRouter(prefix="/references", tags=["references"])
#: Largest npz accepted (a 6144-d float64 covariance is 302 MB; the body limit applies first).
MAX_NPZ_BYTES = 512 * 2**20
RefId = Annotated[str, Path(pattern=REFERENCE_ID, description="Reference id (GET /v1/references).")]


def _store(redis: RedisDep, stores: StoresDep) -> ReferenceStore:
    return ReferenceStore(redis, stores.storage)  # the shared storage: workers on other hosts read the arrays


@router.get("", responses=errors(503))
def list_references(redis: RedisDep, stores: StoresDep) -> list[ReferenceView]:
    """Imported statistics and the Gaussian statistics workers computed (newest first)."""
    return _store(redis, stores).list()


@router.post("/import", status_code=201, response_model=ReferenceView, responses=errors(404, 503))
def import_reference(
    file: Annotated[UploadFile, File(description="npz: mu + cov (fadtk) or mu_ref + sigma_ref "
                                                 "(stable-audio-metrics)")],
    provenance: Annotated[str, Form(description="JSON DeclaredProvenance: embedding (required), model, "
                                                "sample_rate, source, declared_by, n_frames, n_files, note")],
    redis: RedisDep,
    stores: StoresDep,
    response: Response,
) -> ReferenceView:
    try:
        declared = DeclaredProvenance.model_validate_json(provenance)
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'provenance'}: {e['msg']}" for e in exc.errors())
        raise HTTPException(422, f"provenance: {why}") from exc
    data = file.file.read(MAX_NPZ_BYTES + 1)
    if len(data) > MAX_NPZ_BYTES:
        raise HTTPException(413, f"the npz exceeds {MAX_NPZ_BYTES} bytes")
    try:
        view = _store(redis, stores).import_npz(data, declared)
    except ReferenceFileError as exc:
        raise HTTPException(422, f"{file.filename or 'the file'}: {exc}") from exc
    response.headers["Location"] = f"/v1/references/{view.id}"
    return view


@router.get("/{ref_id}/export", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}}, "description": "npz (np.savez) of the mean and covariance"},
    **errors(404, 503)})
def export_reference(ref_id: RefId, redis: RedisDep, stores: StoresDep,
                     layout: Annotated[Literal["fadtk", "stable-audio-metrics"], Query(
                         description=f"key names: {', '.join(f'{k}: {v}' for k, v in LAYOUTS.items())}")] = "fadtk",
                     ) -> Response:
    store = _store(redis, stores)
    view = store.get(ref_id)
    if view is None:
        raise HTTPException(404, f"reference {ref_id!r} not found")
    data = store.export(ref_id, layout)
    if data is None:
        raise HTTPException(404, f"the statistics of reference {ref_id!r} were evicted from the cache; run a job "
                            f"against dataset {view.dataset} to compute them again")
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{ref_id[:16]}-{layout}.npz"'})
