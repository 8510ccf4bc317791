"""HTTP endpoints of the manager: ``/healthz`` and ``/readyz`` (with controller-runtime's sub-paths,
``?exclude=`` and ``?verbose``) and ``/metrics`` in Prometheus text format."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kaito_ctrl import metrics

Check = Callable[[], Awaitable[bool] | bool]


class Checks:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def run(self, only: str | None = None, exclude: frozenset[str] = frozenset()) -> dict[str, bool]:
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            if (only and name != only) or name in exclude:
                continue
            try:
                value = check()
                ok = bool(await value) if isinstance(value, Awaitable) else bool(value)
            except Exception:
                ok = False
            results[name] = ok
        return results

    def __contains__(self, name: str) -> bool:
        return name in self._checks


def _handler(checks: Checks, endpoint: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        only = request.match_info.get("check")
        if only and only not in checks:
            return web.Response(status=404, text=f"no such check: {only}\n")
        exclude = frozenset(request.query.getall("exclude", []))
        results = await checks.run(only, exclude)
        healthy = all(results.values())
        verbose = "verbose" in request.query or not healthy
        if not verbose:
            return web.Response(text="ok")
        lines = [f"[{'+' if ok else '-'}]{name} {'ok' if ok else 'failed'}" for name, ok in results.items()]
        lines.append(f"{endpoint} check {'passed' if healthy else 'failed'}")
        return web.Response(status=200 if healthy else 500, text="\n".join(lines) + "\n")

    return handle


async def _metrics(_: web.Request) -> web.Response:
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(healthz: Checks, readyz: Checks, *, serve_metrics: bool = True) -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", _handler(healthz, "healthz"))
    app.router.add_get("/healthz/{check}", _handler(healthz, "healthz"))
    app.router.add_get("/readyz", _handler(readyz, "readyz"))
    app.router.add_get("/readyz/{check}", _handler(readyz, "readyz"))
    if serve_metrics:
        app.router.add_get("/metrics", _metrics)
    return app


class HTTPServer:
    """One aiohttp site on host:port (port 0 picks a free one; ``port`` tells which after start)."""

    def __init__(self, app: web.Application, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host = host or "0.0.0.0"
        self.port = int(port)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if server is not None and self.port == 0:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._runner.cleanup()
