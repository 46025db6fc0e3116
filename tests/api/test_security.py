"""The api's security and error contract, through a real uvicorn on a real Redis (issue 8, point 6).

Tokens (several, constant-time), auth before the body is read, the binding rule, what health shows without a
token, internal errors behind a request id, the per-client job cap, and problem+json for every error.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from redis import Redis

from app.api.auth import InsecureBinding, token_fingerprint
from app.main import create_app
from app.quota import QUOTA_KEY
from soundcheck.jobstore import JobStore
from soundcheck.serve import ServeError, Service
from soundcheck.settings import Settings
from tests.api.conftest import tone, wav_bytes
from tests.api.faulty_app import SECRET
from tests.api.live import Live, api_env, live_api
from tests.conftest import free_port, make_settings

NEW, OLD, LEGACY = "new-token-4f8a1c", "old-token-9b2e7d", "legacy-token-3c5d"
CAP = 3
PROBLEM = "application/problem+json"


def _db(redis_server: str, n: int) -> str:
    return redis_server.rsplit("/", 1)[0] + f"/{n}"


@pytest.fixture(scope="module")
def secured(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Three accepted tokens (SOUNDCHECK_API_TOKENS new,old + SOUNDCHECK_API_TOKEN), a job cap of 3, 4 GiB uploads."""
    url = _db(redis_server, 3)
    Redis.from_url(url).flushdb()
    with live_api(tmp_path_factory.mktemp("secured"), url, api_tokens=f"{NEW},{OLD}", api_token=LEGACY,
                  max_active_jobs_per_client=CAP, max_upload_bytes=4 * 1024**3) as live:
        yield live


@pytest.fixture(scope="module")
def open_api(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """No token, loopback: the embedded default."""
    url = _db(redis_server, 4)
    Redis.from_url(url).flushdb()
    with live_api(tmp_path_factory.mktemp("open"), url, max_active_jobs_per_client=2) as live:
        yield live


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    assert response.headers.get("x-request-id")
    return body


# ------------------------------------------------------------------ binding


def test_create_app_refuses_a_network_address_without_a_token(redis_server: str, tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "192.168.1.20", "myhost.example"):
        with pytest.raises(InsecureBinding, match="SOUNDCHECK_ALLOW_UNAUTHENTICATED_NETWORK=1"):
            create_app(make_settings(redis_server, tmp_path, api_host=host))
    for ok in ({"api_host": "127.0.0.1"}, {"api_host": "::1"}, {"api_host": "localhost"},
               {"api_host": "0.0.0.0", "api_token": NEW}, {"api_host": "0.0.0.0", "api_tokens": [NEW, OLD]},
               {"api_host": "0.0.0.0", "allow_unauthenticated_network": True}):
        create_app(make_settings(redis_server, tmp_path, **ok))


def test_uvicorn_exits_with_the_reason_when_bound_open(redis_server: str, tmp_path: Path) -> None:
    env = api_env(tmp_path, redis_server, api_host="0.0.0.0")
    proc = subprocess.run([sys.executable, "-m", "uvicorn", "--factory", "app.main:app_factory", "--host", "0.0.0.0",
                           "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "without a token" in proc.stderr + proc.stdout and "SOUNDCHECK_API_TOKEN" in proc.stderr + proc.stdout


def test_opt_out_lets_it_start(redis_server: str, tmp_path: Path) -> None:
    with live_api(tmp_path, _db(redis_server, 5), host="0.0.0.0", api_host="0.0.0.0",
                  allow_unauthenticated_network="1") as live:
        assert httpx.get(f"{live.url}/v1/metrics").status_code == 200


def test_serve_refuses_before_starting_anything(redis_server: str, tmp_path: Path) -> None:
    service = Service(make_settings(redis_server, tmp_path, api_host="0.0.0.0"))
    with pytest.raises(ServeError, match="without a token"):
        service.start(n_workers=1, quiet=True)
    assert service.api is None and not service.workers and service.redis is None


def _outbound_ip() -> str | None:
    """A non-loopback address of this host (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            ip = sock.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def test_uvicorn_bound_wider_than_the_settings_serves_only_loopback(redis_server: str, tmp_path: Path) -> None:
    """`uvicorn --host 0.0.0.0` with SOUNDCHECK_API_HOST left at 127.0.0.1: requests that arrive on a network
    address are refused, loopback ones served."""
    ip = _outbound_ip()
    if ip is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    with live_api(tmp_path, _db(redis_server, 5), host="0.0.0.0") as live:
        assert httpx.get(f"{live.url}/v1/metrics").status_code == 200
        body = _problem(httpx.get(f"http://{ip}:{live.port}/v1/metrics"), 403)
        assert "SOUNDCHECK_ALLOW_UNAUTHENTICATED_NETWORK" in body["detail"]


# ------------------------------------------------------------------ tokens


def test_every_configured_token_is_accepted(secured: Live) -> None:
    for token in (NEW, OLD, LEGACY):
        assert httpx.get(f"{secured.url}/v1/datasets", headers=_auth(token)).status_code == 200
    assert httpx.get(f"{secured.url}/v1/datasets", headers={"Authorization": f"bearer   {NEW}"}).status_code == 200


@pytest.mark.parametrize("header", [
    None, b"Bearer wrong-token-000", b"Bearer " + NEW.encode() + b"x", b"Bearer " + NEW[:-1].encode(),
    b"Bearer \xff", b"Bearer \xc3\xa9t\xc3\xa9", "Bearer tökén".encode("latin-1"), b"Basic " + NEW.encode(),
    b"Bearer", NEW.encode(), b"Bearer a b", b"Bearer ;drop", b"Bearer " + b"A" * 9000,
])
def test_missing_wrong_or_malformed_credentials_are_401(secured: Live, header: bytes | None) -> None:
    headers = {} if header is None else {b"Authorization": header}
    for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/nonexistent"),
                         ("DELETE", "/v1/jobs/x"), ("GET", "/v1/models")):
        response = httpx.request(method, f"{secured.url}{path}", headers=headers)
        _problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert NEW not in response.text and OLD not in response.text


def test_two_authorization_headers_are_401(secured: Live) -> None:
    response = httpx.get(f"{secured.url}/v1/jobs", headers=[("Authorization", f"Bearer {NEW}"),
                                                            ("Authorization", f"Bearer {OLD}")])
    _problem(response, 401)


def test_tokens_are_validated_when_settings_are_read(tmp_path: Path) -> None:
    for bad in ("has space", "tök", "a,b;c", "x\ny"):
        with pytest.raises(ValueError, match="b64token"):
            Settings(data_dir=tmp_path, api_token=bad)
    s = Settings(data_dir=tmp_path, api_tokens=f" {NEW} , {OLD} ,")
    assert s.api_tokens == [NEW, OLD] and s.api_token == NEW  # this machine's clients send the newest
    assert Settings(data_dir=tmp_path, api_token=f" {LEGACY}\n", api_tokens=NEW).accepted_tokens == [LEGACY, NEW]


def test_public_paths_need_no_token(secured: Live) -> None:
    for path in ("/openapi.json", "/docs", "/dashboard/"):
        assert httpx.get(f"{secured.url}{path}").status_code == 200, path
    assert httpx.get(f"{secured.url}/").status_code == 307


def _raw(port: int, request: bytes, wait: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        try:
            return sock.recv(65536)
        except TimeoutError:
            return b""


def _upload_head(token: str | None, length: int) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: multipart/form-data; "
            f"boundary=b0undary\r\nContent-Length: {length}\r\n\r\n").encode()


def test_no_token_is_refused_before_the_body_is_read(secured: Live) -> None:
    """A 3 GiB upload announced without a token gets its 401 at once, with not one body byte sent; the same request
    with a valid token is not answered (the server waits for the body), so the 401 cannot come from reading it."""
    length = 3 * 1024**3
    started = time.monotonic()
    answer = _raw(secured.port, _upload_head(None, length), wait=10)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"application/problem+json" in answer and time.monotonic() - started < 5
    assert _raw(secured.port, _upload_head(NEW, length), wait=2) == b""


def test_no_token_upload_stream_is_cut_off(secured: Live) -> None:
    """Streaming 256 MiB without a token: the answer is 401 and the server stops taking bytes long before the end."""
    total, chunk = 256 * 1024**2, b"\0" * (256 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", secured.port), timeout=10) as sock:
        sock.sendall(_upload_head(None, total))
        try:
            while sent < total:
                sent += sock.send(chunk)
        except OSError:  # reset or timed out: the server is not reading
            pass
        answer = b""
        with contextlib.suppress(OSError):
            answer = sock.recv(65536)
    print(f"no-token upload: the server took {sent} of {total} bytes before closing")
    assert sent < total // 4, f"the server accepted {sent} of {total} bytes"
    if answer:
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


# ------------------------------------------------------------------ health


def test_health_without_a_token_shows_only_the_status(secured: Live) -> None:
    bare = httpx.get(f"{secured.url}/v1/health")
    assert bare.status_code == 200 and set(bare.json()) == {"status"}, bare.json()
    full = httpx.get(f"{secured.url}/v1/health", headers=_auth(OLD)).json()
    assert full["status"] == bare.json()["status"]
    assert {"redis", "workers", "worker_details", "models_loaded"} <= set(full)
    _problem(httpx.get(f"{secured.url}/v1/health", headers=_auth("not-a-token")), 401)


def test_health_of_an_api_without_tokens_shows_details(open_api: Live) -> None:
    assert {"status", "redis", "workers"} <= set(httpx.get(f"{open_api.url}/v1/health").json())


# ------------------------------------------------------------------ internal errors and request ids


def test_internal_error_is_a_request_id_not_a_traceback(redis_server: str, tmp_path: Path) -> None:
    with live_api(tmp_path, _db(redis_server, 5), factory="tests.api.faulty_app:factory", api_token=NEW) as live:
        response = httpx.get(f"{live.url}/v1/fail", headers=_auth(NEW))
        body = _problem(response, 500)
        assert body["request_id"] == response.headers["x-request-id"] and body["request_id"] in body["detail"]
        for leak in ("RuntimeError", "hunter2", "/srv", "Traceback", "fail"):
            assert leak not in response.text, body
        assert set(body) == {"type", "title", "status", "detail", "request_id"}
        deadline = time.monotonic() + 5
        while SECRET not in live.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = live.log_text()
        assert f"request_id={body['request_id']}" in log and "Traceback" in log and SECRET in log


def test_every_response_has_a_request_id(secured: Live) -> None:
    responses = [httpx.get(f"{secured.url}/v1/health"), httpx.get(f"{secured.url}/v1/jobs"),
                 httpx.get(f"{secured.url}/v1/jobs", headers=_auth(NEW)),
                 httpx.get(f"{secured.url}/v1/nope", headers=_auth(NEW)), httpx.get(f"{secured.url}/dashboard/"),
                 httpx.get(f"{secured.url}/openapi.json")]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids) and len(set(ids)) == len(ids)
    echoed = httpx.get(f"{secured.url}/v1/health", headers={"X-Request-ID": "trace-42.a_b"})
    assert echoed.headers["x-request-id"] == "trace-42.a_b"
    unsafe = httpx.get(f"{secured.url}/v1/health", headers={"X-Request-ID": "a\tb" + "x" * 300})
    assert unsafe.headers["x-request-id"].isalnum() and len(unsafe.headers["x-request-id"]) == 32


# ------------------------------------------------------------------ the job quota


def _dataset(live: Live, headers: dict[str, str], freq: float) -> str:
    files = [("files", ("a.wav", wav_bytes(tone(0.5, freq=freq))))]
    response = httpx.post(f"{live.url}/v1/datasets", files=files, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _post_job(live: Live, headers: dict[str, str], ds: str) -> httpx.Response:
    return httpx.post(f"{live.url}/v1/jobs", json={"reference": ds, "candidate": ds, "metrics": ["snr"]},
                      headers=headers, timeout=30)


def test_job_cap_per_token_with_retry_after(secured: Live, redis_server: str) -> None:
    redis = Redis.from_url(_db(redis_server, 3))
    ds = _dataset(secured, _auth(NEW), 440)
    accepted = [_post_job(secured, _auth(NEW), ds) for _ in range(CAP)]
    assert [r.status_code for r in accepted] == [202] * CAP
    refused = _post_job(secured, _auth(NEW), ds)
    body = _problem(refused, 429)
    assert int(refused.headers["retry-after"]) > 0
    assert "SOUNDCHECK_MAX_ACTIVE_JOBS_PER_CLIENT" in body["detail"] and str(CAP) in body["detail"]
    assert _post_job(secured, _auth(OLD), ds).status_code == 202  # each token has its own cap

    # an ended job stops counting: cancel one, the next POST is accepted
    job_id = accepted[0].json()["id"]
    assert httpx.delete(f"{secured.url}/v1/jobs/{job_id}", headers=_auth(NEW)).status_code == 202
    assert _post_job(secured, _auth(NEW), ds).status_code == 202
    _problem(_post_job(secured, _auth(NEW), ds), 429)

    # a job that fails (as the workers' maintenance fails a dead worker's job after its attempts) stops counting
    JobStore(redis).fail(accepted[1].json()["id"], "the worker died (test)")
    assert _post_job(secured, _auth(NEW), ds).status_code == 202

    # the quota set holds only unfinished jobs, and no token in the clear
    keys = [k.decode() for k in redis.scan_iter(QUOTA_KEY.format("*"))]
    assert QUOTA_KEY.format(f"token:{token_fingerprint(NEW)}") in keys and not any(NEW in k for k in keys)
    assert redis.zcard(QUOTA_KEY.format(f"token:{token_fingerprint(NEW)}")) == CAP


def test_parallel_posts_cannot_overshoot_the_cap(secured: Live) -> None:
    headers = _auth(LEGACY)
    ds = _dataset(secured, headers, 330)
    with ThreadPoolExecutor(12) as pool:
        codes = sorted(pool.map(lambda _: _post_job(secured, headers, ds).status_code, range(12)))
    assert codes == [202] * CAP + [429] * (12 - CAP)


def test_a_refused_job_takes_no_slot(secured: Live, redis_server: str) -> None:
    headers = {"Authorization": f"Bearer {OLD}"}
    before = Redis.from_url(_db(redis_server, 3)).zcard(QUOTA_KEY.format(f"token:{token_fingerprint(OLD)}"))
    response = httpx.post(f"{secured.url}/v1/jobs", json={"reference": "f" * 64, "candidate": "f" * 64},
                          headers=headers)
    _problem(response, 404)
    assert Redis.from_url(_db(redis_server, 3)).zcard(QUOTA_KEY.format(f"token:{token_fingerprint(OLD)}")) == before


def test_job_cap_per_ip_without_tokens(open_api: Live) -> None:
    ds = _dataset(open_api, {}, 550)
    assert [_post_job(open_api, {}, ds).status_code for _ in range(3)] == [202, 202, 429]


# ------------------------------------------------------------------ problem+json everywhere


def test_routing_and_parsing_errors_are_problems(secured: Live) -> None:
    headers = _auth(NEW)
    _problem(httpx.get(f"{secured.url}/v1/no-such-route", headers=headers), 404)
    _problem(httpx.get(f"{secured.url}/dashboard/no-such-file.js"), 404)
    _problem(httpx.get(f"{secured.url}/v1/datasets/{'0' * 64}", headers=headers), 404)
    wrong = httpx.put(f"{secured.url}/v1/jobs", headers=headers)
    assert "POST" in _problem(wrong, 405)["detail"] and "POST" in wrong.headers["allow"]
    malformed = httpx.post(f"{secured.url}/v1/jobs", content=b'{"reference": ', headers={
        **headers, "content-type": "application/json"})
    assert "JSON" in _problem(malformed, 400)["detail"]
    bad_form = httpx.post(f"{secured.url}/v1/datasets", content=b"--x\r\nnot a form", headers={
        **headers, "content-type": "multipart/form-data; boundary=x"})
    assert bad_form.status_code in (400, 422) and bad_form.headers["content-type"].startswith(PROBLEM)
    body = _problem(httpx.post(f"{secured.url}/v1/jobs", json={"reference": 1}, headers=headers), 422)
    assert body["errors"]
    for odd in (b'{"reference": "\xff\xfe"}', b"[" * 200_000 + b"]" * 200_000, b'{"reference": 1e999999}',
                b'{"reference": NaN}',
                b'{"reference": "a", "candidate": "b", "options": {"bootstrap": -Infinity}}',
                b"\x00" * 100, b'"just a string"'):
        response = httpx.post(f"{secured.url}/v1/jobs", content=odd,
                              headers={**headers, "content-type": "application/json"})
        assert response.status_code in (400, 422), (odd[:20], response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
    chunked = httpx.post(f"{secured.url}/v1/datasets", content=iter([b"--x\r\n"] * 4),
                         headers={"content-type": "multipart/form-data; boundary=x"})
    assert _problem(chunked, 401) and chunked.headers["connection"] == "close"


@pytest.mark.parametrize("path", ["/data\u0000/x", "~nosuchuser4711/x", "/" + "a" * 5000, "relative/x",
                                  "/" + "x/" * 3000])
def test_register_with_odd_paths_is_a_4xx(secured: Live, path: str) -> None:
    response = httpx.post(f"{secured.url}/v1/datasets/register", json={"path": path}, headers=_auth(NEW))
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith(PROBLEM)


def test_openapi_declares_problem_json_for_every_error(secured: Live) -> None:
    doc = httpx.get(f"{secured.url}/openapi.json").json()
    assert {"type", "title", "status", "detail"} <= set(doc["components"]["schemas"]["Problem"]["properties"])
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert "500" in codes, (method, path)
            if path.startswith("/v1/"):
                assert {"401", "403"} <= codes, (method, path)
                assert op["security"][-1] == {"bearer": []}
            if "requestBody" in op:
                assert {"400", "413", "422"} <= codes, (method, path)
            for code, response in op["responses"].items():
                if path == "/v1/health" and code == "503":  # a health report (status: degraded), by design
                    assert list(response["content"]) == ["application/json"]
                    continue
                if int(code) >= 400:
                    assert list(response["content"]) == [PROBLEM], (method, path, code)
    assert "429" in doc["paths"]["/v1/jobs"]["post"]["responses"]
    assert "Retry-After" in doc["paths"]["/v1/jobs"]["post"]["responses"]["429"]["headers"]
    assert "409" in doc["paths"]["/v1/jobs/{job_id}"]["delete"]["responses"]
    assert "404" in doc["paths"]["/v1/datasets/{dataset_id}"]["get"]["responses"]
    assert doc["paths"]["/v1/health"]["get"]["security"] == [{}, {"bearer": []}]


def test_auth_failures_are_logged_without_the_token(secured: Live) -> None:
    httpx.get(f"{secured.url}/v1/jobs", headers=_auth("leaked-secret-xyz"))
    deadline = time.monotonic() + 5
    while "unknown bearer token" not in secured.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = secured.log_text()
    assert "unknown bearer token" in log and "leaked-secret-xyz" not in log and NEW not in log


@pytest.mark.parametrize("options", ['{"kad": {"scale": Infinity}}', '{"kad": {"bandwidth": 1e400}}',
                                     '{"confidence": NaN}'])
def test_non_finite_options_are_refused_not_stored(secured: Live, options: str) -> None:
    headers = _auth(OLD)
    ds = _dataset(secured, headers, 660)
    body = f'{{"reference": "{ds}", "candidate": "{ds}", "metrics": ["kad"], "options": {options}}}'.encode()
    response = httpx.post(f"{secured.url}/v1/jobs", content=body,
                          headers={**headers, "content-type": "application/json"})
    _problem(response, 422)


def test_head_and_options_without_a_token_are_401(secured: Live) -> None:
    for method in ("HEAD", "OPTIONS"):
        response = httpx.request(method, f"{secured.url}/v1/jobs")
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
