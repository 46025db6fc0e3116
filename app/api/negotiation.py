"""Content negotiation shared by the routes that also answer CSV (jobs, runs, comparisons): the same bytes as
``soundcheck eval|runs show|compare --format csv``, only to a client that names ``text/csv`` before any JSON type."""

from __future__ import annotations

from fastapi import Request, Response


def wants_csv(request: Request) -> bool:
    """text/csv named before any JSON type (a browser's */* or a client's default stays JSON)."""
    types = [part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")]
    return "text/csv" in types and not any(t in ("application/json", "application/*") for t in
                                           types[:types.index("text/csv")])


def csv_response(text: str, filename: str) -> Response:
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'inline; filename="{filename}"', "Vary": "Accept"})


def csv_doc(columns: tuple[str, ...]) -> dict:
    """The OpenAPI ``responses`` entry saying that 200 may also be CSV with these columns."""
    return {200: {"content": {"text/csv": {"schema": {"type": "string"}, "example": ",".join(columns)}}}}
