"""The RFC 9457 error contract: one Problem model, and its declaration on every operation of the OpenAPI document.

Routes list the errors only they can answer (`responses=errors(404, 409)`); :func:`install_openapi` adds those that
every operation can answer (401/403 under /v1, 400/413 with a body, 500 everywhere), so the document and the
server cannot drift apart on them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import compile_path

PROBLEM = "application/problem+json"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})

DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request: the body is not valid JSON or not a readable form.",
    401: "Missing, malformed or unknown bearer token (`Authorization: Bearer <token>`).",
    403: "Forbidden: a path outside the operator's allowed roots, or an api without a token on a network address.",
    404: "No such resource.",
    409: "The resource is not in a state that allows this (e.g. the job already ended).",
    413: "The request body, an archive or a file is over a limit (the detail names the setting).",
    422: "A field is invalid; `errors` lists each one.",
    429: "Too many unfinished jobs for this client; retry after `Retry-After` seconds.",
    500: "Internal error: the server logged it under `request_id`.",
    503: "Redis (queue and state) is not reachable; retry later.",
}

HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer challenge (RFC 6750).", "required": True,
                               "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                          "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted location of the invalid value (e.g. `options.bootstrap`).")
    message: str
    input: Any = Field(None, description="The value sent (shortened).")


class Problem(BaseModel):
    """RFC 9457 problem details; `detail` says what to do."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    request_id: str | None = Field(None, description="Set on 500: quote it when reporting the error.")
    errors: list[FieldError] | None = Field(None, description="Set on 422: one entry per invalid field.")


def error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": DESCRIPTIONS[status],
                                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if status in HEADERS:
        response["headers"] = HEADERS[status]
    return response


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the problem+json answers it can give beyond the common ones."""
    return {status: error_response(status) for status in statuses}


def _common_statuses(path: str, operation: dict[str, Any]) -> list[int]:
    statuses = [500]
    if path.startswith("/v1/"):
        statuses += [401, 403]
    body = operation.get("requestBody", {}).get("content", {})
    if body:
        statuses += [400, 413]
    if body or operation.get("parameters"):
        statuses.append(422)
    return statuses


def allowed_methods(app: FastAPI, path: str) -> str | None:
    """`Allow` for a path: every method the document lists for it (Starlette's own 405 names only the methods of
    the first route that matched the path, e.g. POST for /v1/jobs, which also has GET)."""
    table = getattr(app.state, "allow_table", None)
    if table is None:
        table = {}
        for template, item in app.openapi().get("paths", {}).items():
            methods = {m.upper() for m in item if m.upper() in HTTP_METHODS}
            if "GET" in methods:
                methods.add("HEAD")
            table[template] = (compile_path(template)[0], methods)
        app.state.allow_table = table
    if path in table:  # a literal path (/v1/datasets/register) is its own resource, not /v1/datasets/{dataset_id}
        found = table[path][1]
    else:
        found = set().union(*(methods for regex, methods in table.values() if regex.match(path)))
    return ", ".join(sorted(found)) if found else None


def install_openapi(app: FastAPI, secured: bool) -> None:
    """The document FastAPI builds, plus the Problem schema, the common error answers and, when the api has tokens,
    the bearer scheme (required under /v1, optional on /v1/health, which then shows only its status)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {})
        defs = components.setdefault("schemas", {})
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        defs.update(problem_schema.pop("$defs", {}))
        defs["Problem"] = problem_schema
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                for status in _common_statuses(path, operation):
                    responses.setdefault(str(status), error_response(status))
                if responses.get("422", {}).get("content", {}).get("application/json"):
                    responses["422"] = error_response(422)  # FastAPI's default; ours is problem+json
                if secured and path.startswith("/v1/"):
                    operation["security"] = [{}, {"bearer": []}] if path == "/v1/health" else [{"bearer": []}]
        for unused in ("HTTPValidationError", "ValidationError"):
            defs.pop(unused, None)
        if secured:
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
