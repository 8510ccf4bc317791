"""The apiserver client's limits as settings (flags, environment, validation) and its answer to a 429: wait
the Retry-After the server sent, count and log it, send again; checked at the wire against a loopback HTTP
server that answers 429, with an injected clock (no sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from kaito_ctrl import metrics
from kaito_ctrl.cli.main import build_parser
from kaito_ctrl.kube.client import APF_HEADER, KubeClient
from kaito_ctrl.kube.clock import FakeClock
from kaito_ctrl.kube.config import ConnectionConfig
from kaito_ctrl.kube.errors import TooManyRequests
from kaito_ctrl.kube.retryafter import RetryAfterPolicy
from kaito_ctrl.kube.throttle import DEFAULT_BURST, DEFAULT_QPS, FALLBACK_BURST, FALLBACK_QPS
from kaito_ctrl.settings import Settings

APF_429 = {
    "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429, "reason": "TooManyRequests",
    "message": "too many requests, please try again later",
}  # fmt: skip


# ---------------------------------------------------------------------------- settings
def test_default_is_no_client_side_limit_as_controller_runtime() -> None:
    s = Settings.from_sources(env={})
    assert s.kube_client_qps == -1.0, "paced by the apiserver's API Priority and Fairness"
    assert s.kube_client_burst == DEFAULT_BURST
    assert (FALLBACK_QPS, FALLBACK_BURST) == (DEFAULT_QPS, DEFAULT_BURST) == (200.0, 300), "Karpenter's"


def test_minus_one_is_accepted_from_the_environment() -> None:
    s = Settings.from_sources(env={"KAITO_KUBE_CLIENT_QPS": "50"})
    assert s.kube_client_qps == 50.0
    assert Settings.from_sources(env={"KAITO_KUBE_CLIENT_QPS": "-1"}).kube_client_qps == -1.0


def test_flag_wins_over_environment() -> None:
    args = build_parser().parse_args(["run", "--kube-client-qps", "50"])
    s = Settings.from_sources(args, env={"KAITO_KUBE_CLIENT_QPS": "80", "KAITO_KUBE_CLIENT_BURST": "90"})
    assert (s.kube_client_qps, s.kube_client_burst) == (50.0, 90)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAITO_KUBE_CLIENT_QPS": "0"}, "--kube-client-qps (KAITO_KUBE_CLIENT_QPS): must be > 0, or -1"),
        ({"KAITO_KUBE_CLIENT_QPS": "-5"}, "--kube-client-qps (KAITO_KUBE_CLIENT_QPS): must be > 0, or -1"),
        ({"KAITO_KUBE_CLIENT_QPS": "nan"}, "--kube-client-qps (KAITO_KUBE_CLIENT_QPS): must be > 0, or -1"),
        ({"KAITO_KUBE_CLIENT_QPS": "fast"}, "--kube-client-qps (KAITO_KUBE_CLIENT_QPS): could not convert"),
        ({"KAITO_KUBE_CLIENT_BURST": "0"}, "--kube-client-burst (KAITO_KUBE_CLIENT_BURST): must be >= 1"),
        (
            {"KAITO_KUBE_CLIENT_BURST": "1.5"},
            "--kube-client-burst (KAITO_KUBE_CLIENT_BURST): invalid literal",
        ),
        (
            {"KAITO_WORKSPACE_WORKERS": "0"},
            "--workspace-workers (KAITO_WORKSPACE_WORKERS): must be >= 1, not 0",
        ),
        (
            {"KAITO_PROVISIONER_WORKERS": "-2"},
            "--provisioner-workers (KAITO_PROVISIONER_WORKERS): must be >= 1, not -2",
        ),
    ],
)
def test_bad_limits_are_refused_naming_the_flag(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError) as e:
        Settings.from_sources(env=env)
    assert str(e.value).startswith(named)


def test_workers_are_a_setting() -> None:
    assert Settings.from_sources(env={}).workspace_workers == 4, "settings.py says why"
    assert Settings.from_sources(env={"KAITO_WORKSPACE_WORKERS": "5"}).workspace_workers == 5


def test_run_help_shows_the_limits() -> None:
    sub = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    text = sub.format_help()
    assert "--kube-client-qps" in text and "--kube-client-burst" in text


def test_retry_policy_bounds_the_wait() -> None:
    p = RetryAfterPolicy(max_retries=2, default_wait=1.0, max_wait=30.0)
    assert p.wait(5, 0) == 5
    assert p.wait(None, 0) == 1.0
    assert p.wait(3600, 1) == 30.0
    assert p.wait(5, 2) is None


# ---------------------------------------------------------------------------- 429 at the wire
class Server:
    """Answers 429 + Retry-After to the first ``refusals`` requests, then 200 with an empty ConfigMap list."""

    def __init__(self, refusals: int, retry_after: str | None = "2", apf: bool = True) -> None:
        self.refusals = refusals
        self.retry_after = retry_after
        # As an apiserver with API Priority and Fairness: every answer names the FlowSchema that classified it.
        self.headers = {APF_HEADER: "6f1e0b4a-0000-4000-8000-000000000001"} if apf else {}
        self.seen: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.method)
        if len(self.seen) <= self.refusals:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return web.json_response(APF_429, status=429, headers={**headers, **self.headers})
        return web.json_response({"kind": "ConfigMapList", "items": [], "metadata": {}}, headers=self.headers)


@contextlib.asynccontextmanager
async def serving(server: Server) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, str]]:
    server = Server(refusals=2)
    async with serving(server) as url:
        yield server, url


@pytest.mark.parametrize("apf", [True, False])
async def test_no_client_limit_only_where_the_apiserver_paces_clients(apf: bool) -> None:
    """qps -1: no bucket while the apiserver answers with API Priority and Fairness; the fallback bucket when
    its first answer shows none (a client must never be unpaced on both sides)."""
    server = Server(refusals=0, apf=apf)
    async with serving(server) as url:
        client = KubeClient(ConnectionConfig(server=url), qps=-1)
        try:
            await client.request("GET", "/api/v1/configmaps")
            assert client.client_limit == (None if apf else (FALLBACK_QPS, FALLBACK_BURST))
            await client.request("GET", "/api/v1/configmaps")
            assert client.client_limit == (None if apf else (FALLBACK_QPS, FALLBACK_BURST))
        finally:
            await client.close()


async def test_a_positive_limit_is_kept_whatever_the_apiserver_says() -> None:
    async with serving(Server(refusals=0, apf=True)) as url:
        client = KubeClient(ConnectionConfig(server=url), qps=50, burst=75)
        try:
            await client.request("GET", "/api/v1/configmaps")
            assert client.client_limit == (50, 75)
        finally:
            await client.close()


async def _until(what: str, check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)  # polling interval of a deadline-bounded wait


def _retries(host: str, verb: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "rest_client_request_retries_total", {"code": "429", "verb": verb, "host": host}
    )
    return value or 0.0


async def test_429_is_waited_out_as_told_then_sent_again(served: tuple[Server, str]) -> None:
    server, url = served
    clock = FakeClock()
    client = KubeClient(ConnectionConfig(server=url), clock=clock)
    host = url.removeprefix("http://")
    before = _retries(host, "POST")
    try:
        task = asyncio.create_task(client.request("POST", "/api/v1/namespaces/x/configmaps", body={}))
        await _until("the first 429 and its wait", lambda: clock.sleepers == 1 and len(server.seen) == 1)
        await clock.advance(1.9)
        assert len(server.seen) == 1 and not task.done(), "sent again before Retry-After passed"
        await clock.advance(0.1)
        await _until("the second 429 and its wait", lambda: clock.sleepers == 1 and len(server.seen) == 2)
        await clock.advance(2.0)
        got = await asyncio.wait_for(task, 5)
        assert got["kind"] == "ConfigMapList"
        assert server.seen == ["POST", "POST", "POST"]
        assert _retries(host, "POST") - before == 2
    finally:
        await client.close()


async def test_429_past_the_retry_budget_reaches_the_caller(served: tuple[Server, str]) -> None:
    server, url = served
    clock = FakeClock()
    client = KubeClient(
        ConnectionConfig(server=url), clock=clock, retry_after=RetryAfterPolicy(max_retries=1)
    )
    try:
        task = asyncio.create_task(client.request("GET", "/api/v1/configmaps"))
        await _until("the first 429 and its wait", lambda: clock.sleepers == 1)
        await clock.advance(2.0)
        with pytest.raises(TooManyRequests) as e:
            await asyncio.wait_for(task, 5)
        assert e.value.retry_after == 2.0
        assert len(server.seen) == 2
    finally:
        await client.close()
