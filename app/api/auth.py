"""Who may talk to the api, decided before a byte of the request body is read.

`Guard` is ASGI middleware, not a FastAPI dependency: FastAPI reads (and spools to disk) a multipart body before it
solves dependencies, so a dependency would let anyone without a token upload gigabytes before the 401. The guard
also names the client (token fingerprint, or IP without tokens) for the job quota, and refuses to serve a network
address without a token unless the operator opted out.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import uuid
from typing import Any

from app.api.problems import PROBLEM
from soundcheck.settings import BEARER_TOKEN, Settings

log = logging.getLogger("soundcheck.api")

#: Keys in the request scope's "state" (read through `request.state` by routes and handlers).
REQUEST_ID = "request_id"
CLIENT = "client_id"
AUTHORIZED = "authorized"
#: Reachable without a token: the dashboard's static files, the API docs and the health status (details need one).
PUBLIC_PATHS = frozenset({"/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
PUBLIC_PREFIXES = ("/dashboard/",)
OPTIONAL_AUTH_PATHS = frozenset({"/v1/health"})
#: A file's audio stream (app/api/routes/audio.py): with a `sig` query the route itself checks the signed URL.
AUDIO_PATH = re.compile(r"^/v1/datasets/[^/]+/files/.+/audio$")
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class InsecureBinding(RuntimeError):
    """The api would serve a network address with no token."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def binding_problem(host: str, settings: Settings, where: str | None = None) -> str | None:
    """Why serving on ``host`` is refused, or None when it is fine (``where`` names it in the message)."""
    if settings.accepted_tokens or settings.allow_unauthenticated_network or is_loopback(host):
        return None
    return (f"refusing to serve the soundcheck api on {where or host} without a token: anyone who can reach that "
            "address could upload files, register server directories and queue jobs. Set SOUNDCHECK_API_TOKEN (or "
            "SOUNDCHECK_API_TOKENS), or bind to 127.0.0.1 (SOUNDCHECK_API_HOST), or, when a firewall or an "
            "authenticating proxy already guards it, set SOUNDCHECK_ALLOW_UNAUTHENTICATED_NETWORK=1")


def check_binding(settings: Settings) -> None:
    """Raise :class:`InsecureBinding` when the configured address is a network one and no token is set."""
    reason = binding_problem(settings.api_host, settings, f"{settings.api_host} (SOUNDCHECK_API_HOST)")
    if reason:
        raise InsecureBinding(reason)


def _network_without_token(server: tuple[str, int | None] | None, settings: Settings) -> str | None:
    """The refusal for a connection that arrived on a non-loopback IP of this host (uvicorn names the local socket
    address in scope["server"]; a unix socket or an in-process test client names no IP)."""
    if not server:
        return None
    try:
        ipaddress.ip_address(str(server[0]))
    except ValueError:
        return None
    return binding_problem(str(server[0]), settings, f"{server[0]}:{server[1]}")


def _has_body(scope: dict[str, Any]) -> bool:
    headers = dict(scope.get("headers") or [])
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") not in (b"0", b"")


def _signed_audio(scope: dict[str, Any], path: str) -> bool:
    """A GET of a file's audio with a signature: the route checks the signature (``<audio>`` sends no header)."""
    query = scope.get("query_string", b"")
    return scope.get("method") in ("GET", "HEAD") and b"sig=" in query and bool(AUDIO_PATH.match(path))


def token_fingerprint(token: str) -> str:
    """A stable, non-reversible name for a token (quota keys, logs); never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def route_path(scope: dict[str, Any]) -> str:
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def send_problem(send: Any, status: int, title: str, detail: str,
                       headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    raw = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestId:
    """Every response carries `X-Request-ID` (the client's, when it is a short safe string; else a fresh one)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = [v for k, v in scope.get("headers", []) if k == b"x-request-id"]
        incoming = sent[0].decode("latin-1") if len(sent) == 1 else ""
        request_id = incoming if _SAFE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})[REQUEST_ID] = request_id

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class Guard:
    """Bearer tokens (any of several, for rotation; compared in constant time) for everything but the public paths;
    no tokens: only loopback connections unless the operator allowed the network."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.tokens = [(hashlib.sha256(t.encode()).digest(), token_fingerprint(t)) for t in settings.accepted_tokens]
        self.allow_network = settings.allow_unauthenticated_network
        self.settings = settings

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        client = scope.get("client")
        client_ip = client[0] if client else "local"
        path = route_path(scope)
        if not self.tokens:
            reason = _network_without_token(scope.get("server"), self.settings)
            if reason:  # started some other way than the settings say (e.g. `uvicorn --host 0.0.0.0`)
                log.error("%s", reason)
                await send_problem(send, 403, "Forbidden", reason)
                return
            state.update({CLIENT: f"ip:{client_ip}", AUTHORIZED: True})
            await self.app(scope, receive, send)
            return
        values = [v for k, v in scope.get("headers", []) if k == b"authorization"]
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or path == "/dashboard"
        public = public or _signed_audio(scope, path)
        if public or (not values and path in OPTIONAL_AUTH_PATHS):
            state.update({CLIENT: f"ip:{client_ip}", AUTHORIZED: False})
            await self.app(scope, receive, send)
            return
        fingerprint, why = self._verify(values)
        if fingerprint is None:
            log.warning("401 for %s %s from %s: %s", scope.get("method"), path, client_ip, why)
            challenge = 'Bearer realm="soundcheck"' + (', error="invalid_token"' if values else "")
            headers = [(b"www-authenticate", challenge.encode())]
            if _has_body(scope):  # close rather than let the server drain an upload nobody will read
                headers.append((b"connection", b"close"))
            await send_problem(send, 401, "Unauthorized", f"{why}; send `Authorization: Bearer <token>` with a token "
                               "from SOUNDCHECK_API_TOKEN(S)", headers)
            return
        state.update({CLIENT: f"token:{fingerprint}", AUTHORIZED: True})
        await self.app(scope, receive, send)

    def _verify(self, values: list[bytes]) -> tuple[str | None, str]:
        if not values:
            return None, "this api needs a bearer token"
        if len(values) > 1:
            return None, "more than one Authorization header"
        try:
            text = values[0].decode("ascii").strip()
        except UnicodeDecodeError:
            return None, "the Authorization header is not ASCII"
        scheme, _, credential = text.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not BEARER_TOKEN.fullmatch(credential):
            return None, "the Authorization header is not `Bearer <token>`"
        digest = hashlib.sha256(credential.encode()).digest()
        found = None
        for reference, fingerprint in self.tokens:  # no early exit: the time does not depend on which token matched
            if hmac.compare_digest(digest, reference):
                found = fingerprint
        return found, "unknown bearer token"
