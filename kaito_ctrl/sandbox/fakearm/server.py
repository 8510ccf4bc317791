"""A fake Azure Resource Manager for one AKS cluster's agent pools, over HTTPS (aiohttp).

The real Azure SDK talks to it through ``base_url`` and a CA bundle and cannot tell the difference on the
paths it uses: PUT answers 201/200 with ``Azure-AsyncOperation``, ``Location`` and ``Retry-After`` and the pool
``Creating``; the operation resource goes InProgress -> Succeeded/Failed (with ARM's error body); DELETE
answers 202 (or 204 when there is nothing to delete) and the pool shows ``Deleting``; a second PUT on a busy
pool gets AKS's 409 ``OperationNotAllowed``, while a DELETE preempts a create or update in flight (which ends
Failed with ``AKSOperationPreemptedByDelete``); ResourceSkus and compute usages back a quota pre-check.

Test controls live under ``/_fake`` (faults, pools, request counts, config) and on :class:`FakeArmServer`.
"""

from __future__ import annotations

import asyncio
import re
import socket
import tempfile
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web

from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.sandbox.fakearm.certs import ServerCerts, ensure_certs
from kaito_ctrl.sandbox.fakearm.deviceplugin import FakeDevicePlugin
from kaito_ctrl.sandbox.fakearm.faults import Fault, FaultBook, FaultKind
from kaito_ctrl.sandbox.fakearm.joiner import NodeJoiner
from kaito_ctrl.sandbox.fakearm.state import (
    ArmError,
    FakeArmConfig,
    FakeArmState,
    Operation,
)

log = structlog.get_logger(__name__)

SUB = "/subscriptions/{sub}"
CLUSTER = SUB + "/{rgs:resource[Gg]roups}/{rg}/providers/Microsoft.ContainerService/managedClusters/{cluster}"
AKS_LOCATION = SUB + "/providers/Microsoft.ContainerService/locations/{loc}"
ADMIN = "/_fake"
_LOCATION_FILTER = re.compile(r"location\s+eq\s+'([^']*)'", re.I)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


async def _requested_vm_size(request: web.Request) -> str:
    """The vmSize a PUT asks for, so a refusal can name it as AKS does (aiohttp keeps the body for the handler)."""
    if request.method != "PUT" or not request.can_read_body:
        return ""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return ""
    props = body.get("properties") if isinstance(body, dict) else None
    return str(props.get("vmSize") or "") if isinstance(props, dict) else ""


def _error(err: ArmError, headers: dict[str, str] | None = None) -> web.Response:
    return _json(err.body(), err.status, headers)


class RequestLog:
    """Requests by kind ("PUT pool", "GET operation", ...) and by kind and answer ("PUT pool 429")."""

    def __init__(self, clock: Clock = REAL_CLOCK) -> None:
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        # The latest answers in order: (monotonic time, "PUT pool 429"), to check how long clients waited.
        self.recent: deque[tuple[float, str]] = deque(maxlen=1000)
        # Every User-Agent seen on ARM routes: clients must identify themselves (kaito-ctrl/<version>).
        self.user_agents: Counter[str] = Counter()
        # The client ends (host, port) ARM requests came from: one per TCP connection, so a client that reuses
        # its connections shows few, one that handshakes per request shows one per request.
        self.peers: set[str] = set()

    def record(self, kind: str, status: int) -> None:
        key = f"{kind} {status}"
        self.statuses[key] += 1
        self.recent.append((self.clock.monotonic(), key))

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "statuses": dict(self.statuses), "connections": len(self.peers)}

    def clear(self) -> None:
        self.counts.clear()
        self.statuses.clear()
        self.recent.clear()
        self.user_agents.clear()
        self.peers.clear()


class FakeArmServer:
    def __init__(
        self,
        config: FakeArmConfig | None = None,
        *,
        state_dir: Path | None = None,
        clock: Clock = REAL_CLOCK,
        kube: KubeClient | None = None,
        join_delay: float = 1.0,
        tick_interval: float = 0.05,
    ) -> None:
        self.faults = FaultBook()
        self.state_dir = state_dir
        path = state_dir / "state.json" if state_dir is not None else None
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        self.state = FakeArmState(config, clock=clock, path=path, faults=self.faults)
        self.requests = RequestLog(clock)
        self.joiner = NodeJoiner(self.state, kube, join_delay=join_delay) if kube is not None else None
        self.device_plugin = FakeDevicePlugin(kube) if kube is not None else None
        self.tick_interval = tick_interval
        self.url = ""
        self.certs: ServerCerts | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def config(self) -> FakeArmConfig:
        return self.state.config

    @property
    def ca_file(self) -> str:
        assert self.certs is not None, "start() first"
        return str(self.certs.ca_file)

    # ------------------------------------------------------------------ Python controls
    def inject(self, fault: Fault) -> Fault:
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    # ------------------------------------------------------------------ lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0, certs: ServerCerts | None = None) -> str:
        if certs is None:
            if self.state_dir is not None:
                certs = ensure_certs(self.state_dir / "tls")
            else:
                self._tmp = tempfile.TemporaryDirectory(prefix="fake-arm-")
                certs = ensure_certs(Path(self._tmp.name))
        self.certs = certs
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=certs.server_context()).start()
        bound = sock.getsockname()[1]
        self.url = f"https://{host if ':' not in host else f'[{host}]'}:{bound}"
        self._tasks.append(asyncio.create_task(self._tick_forever(), name="fake-arm-tick"))
        if self.joiner is not None:
            self._tasks.append(asyncio.create_task(self.joiner.run(), name="fake-arm-joiner"))
        if self.device_plugin is not None:
            self._tasks.append(asyncio.create_task(self.device_plugin.run(), name="fake-device-plugin"))
        log.info("fake ARM server listening", url=self.url, ca_file=str(certs.ca_file))
        return self.url

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a background loop that swallowed its cancellation must not hang the caller's teardown.
            done, stuck = await asyncio.wait(self._tasks, timeout=10)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved, so asyncio does not report it as never retrieved
            for task in stuck:
                log.warning("fake ARM background task did not stop when cancelled", task=task.get_name())
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> FakeArmServer:
        if not self.url:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick_forever(self) -> None:
        while True:
            self.state.tick()
            await asyncio.sleep(self.tick_interval)

    # ------------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        pools = app.router.add_resource(CLUSTER + "/agentPools", name="pools")
        pools.add_route("GET", self.list_pools)
        pool = app.router.add_resource(CLUSTER + "/agentPools/{pool}", name="pool")
        pool.add_route("GET", self.get_pool)
        pool.add_route("PUT", self.put_pool)
        pool.add_route("DELETE", self.delete_pool)
        app.router.add_resource(AKS_LOCATION + "/operations/{op}", name="operation").add_route(
            "GET", self.get_operation
        )
        app.router.add_resource(AKS_LOCATION + "/operationresults/{op}", name="operationresult").add_route(
            "GET", self.get_operation_result
        )
        app.router.add_resource(SUB + "/providers/Microsoft.Compute/skus", name="skus").add_route(
            "GET", self.list_skus
        )
        app.router.add_resource(
            SUB + "/providers/Microsoft.Compute/locations/{loc}/usages", name="usages"
        ).add_route("GET", self.list_usages)
        admin = [
            ("GET", "/faults", self.admin_faults),
            ("POST", "/faults", self.admin_add_faults),
            ("DELETE", "/faults", self.admin_clear_faults),
            ("DELETE", "/faults/{id}", self.admin_remove_fault),
            ("GET", "/pools", self.admin_pools),
            ("GET", "/requests", self.admin_requests),
            ("DELETE", "/requests", self.admin_clear_requests),
            ("GET", "/config", self.admin_config),
            ("POST", "/config", self.admin_update_config),
            ("GET", "/healthz", self.admin_healthz),
        ]
        for method, path, handler in admin:
            app.router.add_route(method, ADMIN + path, handler)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.state.tick()
        resource = request.match_info.route.resource
        name = resource.name if resource is not None else None
        if name is None:  # admin API, or no such route
            return await handler(request)
        kind = f"{request.method} {name}"
        self.requests.counts[kind] += 1
        self.requests.user_agents[request.headers.get("User-Agent", "")] += 1
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        if peer:
            self.requests.peers.add(f"{peer[0]}:{peer[1]}")
        try:
            response = await self._arm(request, handler, kind)
        except ArmError as e:
            response = _error(e)
        self.requests.record(kind, response.status)
        request_id = str(uuid.uuid4())
        response.headers["x-ms-request-id"] = request_id
        response.headers["x-ms-correlation-request-id"] = request.headers.get(
            "x-ms-correlation-request-id", request_id
        )
        return response

    async def _arm(self, request: web.Request, handler: Handler, kind: str) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise ArmError(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        if self.config.token is not None and auth.removeprefix("Bearer ") != self.config.token:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if not request.query.get("api-version"):
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        fault = self.faults.take_http(kind, request.match_info.get("pool"))
        if fault is not None:
            c = self.config
            context = {
                "operation_type": f"{request.method} {request.path}",
                "operation": kind,
                "pool": request.match_info.get("pool", ""),
                "cluster": c.cluster_name,
                "resource_group": c.resource_group,
                "location": c.location,
                "vm_size": await _requested_vm_size(request),
            }
            err = fault.error(context)
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            log.info("fake ARM fault", kind=fault.kind.value, request=kind, status=fault.http_status)
            return _json({"error": err}, fault.http_status, headers)
        self._check_scope(request)
        return await handler(request)

    def _check_scope(self, request: web.Request) -> None:
        c, info = self.config, request.match_info
        if info.get("sub", c.subscription_id).lower() != c.subscription_id.lower():
            raise ArmError(
                404, "SubscriptionNotFound", f"The subscription '{info['sub']}' could not be found."
            )
        if info.get("rg", c.resource_group).lower() != c.resource_group.lower():
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{info['rg']}' could not be found.")
        if info.get("cluster", c.cluster_name).lower() != c.cluster_name.lower():
            raise ArmError(
                404,
                "ParentResourceNotFound",
                "Can not perform requested operation on nested resource. Parent resource "
                f"'{info['cluster']}' not found.",
            )

    def _op_headers(self, request: web.Request, op: Operation) -> dict[str, str]:
        c = self.config
        base = (
            f"{request.scheme}://{request.host}/subscriptions/{c.subscription_id}/providers/"
            f"Microsoft.ContainerService/locations/{c.location}"
        )
        version = request.query.get("api-version", "")
        headers = {
            "Azure-AsyncOperation": f"{base}/operations/{op.id}?api-version={version}",
            "Location": f"{base}/operationresults/{op.id}?api-version={version}",
        }
        if c.retry_after > 0:
            headers["Retry-After"] = str(c.retry_after)
        return headers

    # ------------------------------------------------------------------ agent pools
    async def list_pools(self, request: web.Request) -> web.Response:
        try:
            offset = int(request.query.get("$skipToken", "0"))
        except ValueError as e:
            raise ArmError(400, "InvalidParameter", "The value of $skipToken is invalid.") from e
        pools = self.state.list_pools()
        size = max(1, self.config.page_size)
        body: dict[str, Any] = {"value": [self.state.resource(p) for p in pools[offset : offset + size]]}
        if offset + size < len(pools):
            version = request.query.get("api-version", "")
            body["nextLink"] = (
                f"{request.scheme}://{request.host}{request.path}?api-version={version}&$skipToken={offset + size}"
            )
        return _json(body)

    async def get_pool(self, request: web.Request) -> web.Response:
        name = request.match_info["pool"]
        pool = self.state.pools.get(name)
        if pool is None:
            raise ArmError(
                404,
                "NotFound",
                f"Agent Pool not found: '{name}' in managed cluster '{self.config.cluster_name}'.",
            )
        return _json(self.state.resource(pool))

    async def put_pool(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as e:
            raise ArmError(
                400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
            ) from e
        status, pool, op = self.state.put_pool(request.match_info["pool"], body)
        return _json(self.state.resource(pool), status, self._op_headers(request, op))

    async def delete_pool(self, request: web.Request) -> web.Response:
        if request.query.get("ignore-pod-disruption-budget", "").lower() == "true":
            self.requests.counts["DELETE pool ignoring PDBs"] += 1
        op = self.state.delete_pool(request.match_info["pool"])
        if op is None:
            return web.Response(status=204)
        return web.Response(status=202, headers=self._op_headers(request, op))

    # ------------------------------------------------------------------ operations
    def _operation(self, request: web.Request) -> Operation:
        op = self.state.operations.get(request.match_info["op"])
        if op is None or request.match_info["loc"].lower() != self.config.location.lower():
            raise ArmError(404, "NotFound", f"Operation '{request.match_info['op']}' was not found.")
        return op

    async def get_operation(self, request: web.Request) -> web.Response:
        op = self._operation(request)
        headers = None
        if op.status == "InProgress" and self.config.retry_after > 0:
            headers = {"Retry-After": str(self.config.retry_after)}
        return _json(self.state.operation_status(op), headers=headers)

    async def get_operation_result(self, request: web.Request) -> web.Response:
        op = self._operation(request)
        if op.status == "InProgress":
            return web.Response(status=202, headers=self._op_headers(request, op))
        if op.error:
            return _json({"error": op.error}, op.error_status)
        return web.Response(status=204)

    # ------------------------------------------------------------------ compute
    async def list_skus(self, request: web.Request) -> web.Response:
        match = _LOCATION_FILTER.search(request.query.get("$filter", ""))
        return _json({"value": self.state.skus(match.group(1) if match else None)})

    async def list_usages(self, request: web.Request) -> web.Response:
        if request.match_info["loc"].lower() != self.config.location.lower():
            return _json({"value": []})
        return _json({"value": self.state.usages()})

    # ------------------------------------------------------------------ admin
    async def admin_faults(self, request: web.Request) -> web.Response:
        return _json([f.to_json() for f in self.faults])

    async def admin_add_faults(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            items = data if isinstance(data, list) else [data]
            added = [self.faults.add(Fault.from_json(item)) for item in items]
        except (orjson.JSONDecodeError, ValueError, TypeError) as e:
            return _json({"error": str(e)}, 400)
        return _json([f.to_json() for f in added], 201)

    async def admin_clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.Response(status=204)

    async def admin_remove_fault(self, request: web.Request) -> web.Response:
        return web.Response(status=204 if self.faults.remove(request.match_info["id"]) else 404)

    async def admin_pools(self, request: web.Request) -> web.Response:
        return _json(
            [
                {
                    **self.state.resource(p),
                    "operation": p.operation,
                    "createdAt": p.created,
                    "succeededAt": p.succeeded_at,
                }
                for p in self.state.list_pools()
            ]
        )

    async def admin_requests(self, request: web.Request) -> web.Response:
        return _json(self.requests.to_json())

    async def admin_clear_requests(self, request: web.Request) -> web.Response:
        self.requests.clear()
        return web.Response(status=204)

    async def admin_config(self, request: web.Request) -> web.Response:
        return _json(self.config.to_json())

    async def admin_update_config(self, request: web.Request) -> web.Response:
        try:
            self.config.update(orjson.loads(await request.read()))
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as e:
            return _json({"error": str(e)}, 400)
        return _json(self.config.to_json())

    async def admin_healthz(self, request: web.Request) -> web.Response:
        return _json({"ok": True, "pools": len(self.state.pools), "faults": [k.value for k in FaultKind]})
