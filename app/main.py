"""create_app(): routes, the Redis pool in the lifespan, and RFC 9457 problem+json for every error."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import comparisons
from app.api.auth import REQUEST_ID, Guard, RequestId, check_binding, route_path
from app.api.deps import require_token
from app.api.problems import allowed_methods, install_openapi
from app.api.routes import audio, datasets, health, jobs, metrics, models, presets, references
from app.api.routes import runs as runs_routes  # issue 11: training runs
from app.datasets import Forbidden
from app.jobs import JobRequestError
from app.quota import QuotaExceeded
from soundcheck.datastore import DatasetError, TooLarge
from soundcheck.settings import Settings, get_settings
from soundcheck.stores import Stores

log = logging.getLogger("soundcheck.api")
STATIC_DIR = Path(__file__).parent / "static"
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def redis_problem(exc: RedisError, retry_after_s: int) -> JSONResponse:
    """503 with Retry-After for any Redis failure, raised in a route or a dependency: Redis down, restarting
    (loading its AOF) or paused is a passing state that clients and load balancers should wait out."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        detail = (f"Redis is not reachable ({type(exc).__name__}: {exc}); retry in {retry_after_s} s (is "
                  "`soundcheck serve` running? it restarts a Redis that died)")
    else:
        detail = f"Redis refused the command ({type(exc).__name__}: {exc}); retry in {retry_after_s} s"
    response = problem(503, "Service Unavailable", detail)
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def api_redis(settings: Settings) -> Redis:
    """The api's Redis client: short socket timeouts so a request fails fast (503) instead of hanging while
    Redis is down or paused; one quick retry on a connection error, so the first request after a Redis restart
    reconnects its stale pooled connection instead of failing."""
    timeout = settings.api_redis_timeout_s
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1, supported_errors=(RedisConnectionError,))
    return Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry,
                          health_check_interval=30)


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        errors.append({"field": loc, "message": msg, "input": _short(err.get("input"))})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return detail, errors


def _short(value: Any) -> Any:
    """The offending input, echoed as JSON can carry it (NaN and infinities, which JSON has not, as text)."""
    text = repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value if len(text) <= 200 and isinstance(value, str | int | float | bool | None) else text[:200]


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)  # also FastAPI's; and Starlette's own 404/405 from routing
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                  405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 422: "Unprocessable Content"}
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such resource; the api lives under /v1 (see /docs)"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request.app, route_path(request.scope)) or headers.get("Allow", "")
            detail = f"method {request.method} is not allowed here; allowed: {headers['Allow'] or 'none'}"
        response = problem(exc.status_code, titles.get(exc.status_code, "Error"), detail)
        response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        malformed = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if malformed:
            why = malformed[0].get("ctx", {}).get("error", "invalid JSON")
            return problem(400, "Bad Request", f"the request body is not valid JSON ({why} at character "
                           f"{malformed[0].get('loc', ('', '?'))[-1]}); send a JSON object")
        detail, errors = _validation_detail(exc)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(QuotaExceeded)
    async def _quota(_: Request, exc: QuotaExceeded) -> JSONResponse:
        response = problem(429, "Too Many Requests", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(DatasetError)
    async def _dataset(_: Request, exc: DatasetError) -> JSONResponse:
        status = 413 if isinstance(exc, TooLarge) else 403 if isinstance(exc, Forbidden) else 422
        return problem(status, "Dataset rejected", str(exc))

    @app.exception_handler(JobRequestError)
    async def _job(_: Request, exc: JobRequestError) -> JSONResponse:
        return problem(exc.status, "Job rejected", str(exc))

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError) -> JSONResponse:
        return redis_problem(exc, request.app.state.settings.redis_retry_after_s)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        """The traceback goes to the log under a request id; the client gets only that id (no internals)."""
        request_id = request.scope.get("state", {}).get(REQUEST_ID) or uuid.uuid4().hex
        log.error("unhandled error in %s %s (request_id=%s)", request.method, request.url.path, request_id,
                  exc_info=exc)
        response = problem(500, "Internal Server Error", "an internal error occurred; it is logged on the server "
                           f"under request_id {request_id}: quote it when reporting the problem", request_id=request_id)
        response.headers["X-Request-ID"] = request_id
        return response


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Counts request-body bytes as they arrive (Content-Length or chunked) and answers 413 past the limit,
    before an oversized upload can fill the disk with spooled temp files."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._reject(send, int(length))
            return
        received = 0
        exceeded = False

        async def counting_receive() -> dict:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        replied = False

        async def guarded_send(message: dict) -> None:
            nonlocal replied
            if not exceeded:
                await send(message)
            elif not replied:  # the app answered the broken body; the answer is ours: 413
                replied = True
                await self._reject(send, received)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not replied:
                await self._reject(send, received)

    async def _reject(self, send: Any, size: int) -> None:
        response = problem(413, "Payload Too Large", f"request body of more than {self.limit} bytes ({size} "
                           "seen) exceeds SOUNDCHECK_MAX_UPLOAD_BYTES; split the upload")
        headers = [*response.raw_headers, (b"connection", b"close")]  # do not drain the rest of the upload
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


def create_app(settings: Settings | None = None) -> FastAPI:
    """The api; raises :class:`InsecureBinding` for a network address without a token (see SECURITY.md)."""
    settings = settings or get_settings()
    check_binding(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = api_redis(settings)
        try:
            yield
        finally:
            app.state.redis.close()

    app = FastAPI(
        title="soundcheck", version="0.1.0", lifespan=lifespan,
        description="Objective metrics for generated audio (FAD, KAD, NDB/JSD, PRDC, IS/KL, signal metrics).",
    )
    app.state.settings = settings
    app.state.stores = Stores.from_settings(settings)  # the shared storage (data dir or bucket) + read cache
    install_problem_handlers(app)
    install_openapi(app, secured=bool(settings.accepted_tokens))
    secured = [Depends(require_token)]
    for module in (health, datasets, jobs, models, metrics, presets, runs_routes, comparisons, references):
        app.include_router(module.router, prefix="/v1", dependencies=secured if module is not health else [])
    app.include_router(audio.router, prefix="/v1")  # each route checks the token itself (or an audio URL's signature)

    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(Guard, settings=settings)  # added last = runs first: no token, no body read
    app.add_middleware(RequestId)

    if STATIC_DIR.is_dir():
        app.mount("/dashboard", StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    return app


def app_factory() -> FastAPI:
    """uvicorn --factory app.main:app_factory"""
    return create_app()
