"""The light client: its copies of service constants stay equal, the async twin has the sync API, and the retry
decisions (what is safe to repeat, how long to wait) follow RFC 9110."""

from __future__ import annotations

import inspect
import random
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from soundcheck import client as light
from soundcheck.client import AsyncClient, Client
from soundcheck.retry import Attempts, RetryPolicy, parse_retry_after


def test_copied_constants_equal_the_service_modules() -> None:
    from soundcheck import datastore, jobstore

    assert light.AUDIO_SUFFIXES == datastore.AUDIO_SUFFIXES
    assert light.LABELS_CSV == datastore.LABELS_CSV
    assert tuple(light.TERMINAL) == tuple(jobstore.TERMINAL)


def _public(cls: type) -> dict[str, object]:
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")}


def test_async_client_has_every_method_of_the_sync_client_with_the_same_parameters() -> None:
    sync, asynchronous = _public(Client), _public(AsyncClient)
    assert set(sync) == set(asynchronous)
    for name, method in sync.items():
        twin = asynchronous[name]
        assert inspect.iscoroutinefunction(twin), f"AsyncClient.{name} is not async"
        assert list(inspect.signature(method).parameters) == list(inspect.signature(twin).parameters), name
        for param, expected in inspect.signature(method).parameters.items():
            assert inspect.signature(twin).parameters[param].default == expected.default, (name, param)
    assert list(inspect.signature(Client).parameters) == list(inspect.signature(AsyncClient).parameters)


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    now = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)  # "Tue, 01 Dec 2026 08:00:42 GMT"
    assert parse_retry_after(later, now) == 42.0
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0.0  # in the past
    for bad in (None, "", "soon", "-3", "1.5e3"):
        assert parse_retry_after(bad, now) is None


def test_backoff_doubles_with_equal_jitter_and_stops_at_the_cap() -> None:
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=4.0, rng=random.Random(1))
    for retry in range(8):
        step = min(4.0, 0.5 * 2**retry)
        for _ in range(50):
            assert step / 2 <= policy.backoff(retry) <= step


def _error(kind: type[httpx.TransportError]) -> httpx.TransportError:
    return kind("boom", request=httpx.Request("POST", "http://x/v1/jobs"))


def _answer(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(status, headers=headers)


def test_a_job_submission_is_repeated_only_when_it_cannot_have_been_processed() -> None:
    policy = RetryPolicy(attempts=10, backoff_s=0.0)
    post = Attempts(policy, idempotent=False)
    assert post.after_error(_error(httpx.ConnectError)) is not None  # never sent
    assert post.after_error(_error(httpx.ConnectTimeout)) is not None
    assert post.after_response(_answer(503, "2")) == 2.0  # not processed, and the server says when
    assert post.after_response(_answer(429, "5")) == 5.0
    assert post.after_response(_answer(502)) is None  # the gateway may have passed it on
    assert post.after_response(_answer(504)) is None
    assert Attempts(policy, idempotent=False).after_error(_error(httpx.ReadError)) is None  # sent, maybe processed
    broken = Attempts(policy, idempotent=False)
    assert broken.after_error(_error(httpx.ReadTimeout)) is None
    assert "already have been processed" in broken.gave_up_because
    for status in (200, 201, 400, 404, 409, 422, 500):
        assert Attempts(policy, idempotent=False).after_response(_answer(status)) is None


def test_idempotent_requests_are_repeated_after_any_transport_error_and_gateway_answer() -> None:
    get = Attempts(RetryPolicy(attempts=10, backoff_s=0.0), idempotent=True)
    for kind in (httpx.ConnectError, httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError,
                 httpx.WriteError):
        assert get.after_error(_error(kind)) is not None, kind
    for status in (429, 502, 503, 504):
        assert get.after_response(_answer(status)) is not None, status
    assert get.after_response(_answer(500)) is None  # a bug of the api is not fixed by asking again


def test_attempts_and_time_are_bounded() -> None:
    tries = Attempts(RetryPolicy(attempts=3, backoff_s=0.0), idempotent=True)
    assert [tries.after_response(_answer(503)) is not None for _ in range(3)] == [True, True, False]
    assert "3 attempts" in tries.gave_up_because

    now = [0.0]
    timed = Attempts(RetryPolicy(attempts=100, max_elapsed_s=10.0), idempotent=True, clock=lambda: now[0])
    assert timed.after_response(_answer(503, "6")) == 6.0
    now[0] = 6.0
    assert timed.after_response(_answer(503, "6")) is None  # 6 + 6 > 10: fail now rather than sleep in vain
    assert "10 s retry budget" in timed.gave_up_because


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(max_elapsed_s=-1)


def test_a_float_timeout_keeps_connecting_short() -> None:
    with Client(timeout=900) as sc:
        assert sc._http.timeout.connect == light.CONNECT_TIMEOUT_S
        assert sc._http.timeout.read == sc._http.timeout.write == 900
    with Client(timeout=httpx.Timeout(5.0, read=None)) as sc:
        assert sc._http.timeout.read is None


def test_a_service_command_without_its_packages_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from soundcheck import cli

    monkeypatch.setitem(sys.modules, "redis", None)  # what the light install looks like to `import redis`
    monkeypatch.delitem(sys.modules, "soundcheck.serve", raising=False)
    assert cli.main(["serve"]) == 2  # usage (3 is a failed job)
    err = capsys.readouterr().err
    assert "pip install 'soundcheck[all]'" in err and "redis is not installed" in err


def test_a_missing_module_that_is_not_the_service_s_still_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from soundcheck import cli

    def broken(_: object) -> int:
        import soundcheck_no_such_module  # noqa: F401

        return 0

    monkeypatch.setattr(cli, "cmd_examples", broken)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["examples", "/tmp/x"])
