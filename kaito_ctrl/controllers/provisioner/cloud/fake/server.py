"""A fake Azure Resource Manager for AKS agent pools, over HTTPS, with real long-running-operation semantics.

The real Azure SDK clients talk to it through ``base_url`` and a CA bundle; nothing else differs from Azure:
PUT/DELETE answer 201/202 with ``Azure-AsyncOperation``, ``Location`` and ``Retry-After`` headers, the operation
resource goes InProgress -> Succeeded/Failed, pools show ``provisioningState`` Creating/Succeeded/Deleting, and
errors use ARM's JSON shape. Time comes from an injectable clock so tests decide when operations finish.
"""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from kaito_ctrl.kube.clock import REAL_CLOCK, Clock

POOLS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{cluster}/agentPools"
OPERATIONS = "/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{location}/operations/{op}"


def arm_error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


@dataclass
class Operation:
    id: str
    pool: str
    kind: str  # "create" or "delete"
    done_at: float
    error: dict[str, str] | None = None


@dataclass
class FakeARM:
    location: str = "eastus"
    operation_seconds: float = 0.5
    clock: Clock = REAL_CLOCK
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    # Faults: the next creates fail their operation with this ARM error (code, message).
    create_failures: list[tuple[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        base = POOLS
        app.router.add_get(base, self.list_pools)
        app.router.add_put(base + "/{name}", self.put_pool)
        app.router.add_get(base + "/{name}", self.get_pool)
        app.router.add_delete(base + "/{name}", self.delete_pool)
        app.router.add_get(OPERATIONS, self.get_operation)
        return app

    # ------------------------------------------------------------------ helpers
    def _count(self, request: web.Request) -> None:
        resource = request.match_info.route.resource
        key = f"{request.method} {resource.canonical if resource else request.path}"
        self.requests[key] = self.requests.get(key, 0) + 1

    def _settle(self, name: str) -> None:
        """Apply finished operations to the pool's state."""
        for op in list(self.operations.values()):
            if op.pool != name or self.clock.monotonic() < op.done_at:
                continue
            pool = self.pools.get(name)
            if pool is None:
                continue
            if op.kind == "delete":
                del self.pools[name]
            elif pool["properties"]["provisioningState"] == "Creating":
                pool["properties"]["provisioningState"] = "Failed" if op.error else "Succeeded"

    def _in_progress(self, name: str) -> Operation | None:
        now = self.clock.monotonic()
        return next((o for o in self.operations.values() if o.pool == name and now < o.done_at), None)

    def _op_headers(self, request: web.Request, op: Operation) -> dict[str, str]:
        sub = request.match_info["sub"]
        version = request.query.get("api-version", "")
        path = OPERATIONS.format(sub=sub, location=self.location, op=op.id)
        url = f"{request.scheme}://{request.host}{path}?api-version={version}"
        return {"Azure-AsyncOperation": url, "Location": url, "Retry-After": "1"}

    def _start(self, name: str, kind: str) -> Operation:
        error = None
        if kind == "create" and self.create_failures:
            code, message = self.create_failures.pop(0)
            error = {"code": code, "message": message}
        op = Operation(uuid.uuid4().hex, name, kind, self.clock.monotonic() + self.operation_seconds, error)
        self.operations[op.id] = op
        return op

    def _json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status, body=orjson.dumps(obj), content_type="application/json", headers=headers
        )

    # ------------------------------------------------------------------ handlers
    async def list_pools(self, request: web.Request) -> web.Response:
        self._count(request)
        for name in list(self.pools):
            self._settle(name)
        return self._json({"value": list(self.pools.values())})

    async def get_pool(self, request: web.Request) -> web.Response:
        self._count(request)
        name = request.match_info["name"]
        self._settle(name)
        pool = self.pools.get(name)
        if pool is None:
            return arm_error(404, "NotFound", f"Agent Pool not found: {name}")
        return self._json(pool)

    async def put_pool(self, request: web.Request) -> web.Response:
        self._count(request)
        if "api-version" not in request.query:
            return arm_error(
                400, "MissingApiVersionParameter", "The api-version query parameter is required."
            )
        name = request.match_info["name"]
        self._settle(name)
        if self._in_progress(name):
            return arm_error(
                409, "OperationNotAllowed",
                f"Operation is not allowed: Another agentpool operation ({name} - Creating) is in progress, "
                "please wait for it to finish before starting a new operation.",
            )  # fmt: skip
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return arm_error(
                400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
            )
        props = dict(body.get("properties") or {})
        if not props.get("vmSize"):
            return arm_error(400, "InvalidParameter", "Required parameter 'vmSize' is missing (null).")
        existing = self.pools.get(name)
        sub, rg, cluster = (request.match_info[k] for k in ("sub", "rg", "cluster"))
        props.setdefault("count", 1)
        props.setdefault("mode", "User")
        props["provisioningState"] = "Creating" if existing is None else "Updating"
        props.setdefault("powerState", {"code": "Running"})
        pool = {
            "id": POOLS.format(sub=sub, rg=rg, cluster=cluster) + f"/{name}",
            "name": name,
            "type": "Microsoft.ContainerService/managedClusters/agentPools",
            "properties": props,
        }
        self.pools[name] = pool
        op = self._start(name, "create")
        if existing is not None:
            op.done_at = self.clock.monotonic()
            props["provisioningState"] = "Succeeded"
        return self._json(pool, 200 if existing else 201, self._op_headers(request, op))

    async def delete_pool(self, request: web.Request) -> web.Response:
        self._count(request)
        name = request.match_info["name"]
        self._settle(name)
        pool = self.pools.get(name)
        if pool is None:
            return web.Response(status=204)
        pool["properties"]["provisioningState"] = "Deleting"
        op = self._start(name, "delete")
        return web.Response(status=202, headers=self._op_headers(request, op))

    async def get_operation(self, request: web.Request) -> web.Response:
        self._count(request)
        op = self.operations.get(request.match_info["op"])
        if op is None:
            return arm_error(404, "NotFound", "operation not found")
        done = self.clock.monotonic() >= op.done_at
        self._settle(op.pool)
        status = "InProgress" if not done else ("Failed" if op.error else "Succeeded")
        body: dict[str, Any] = {"id": request.path, "name": op.id, "status": status}
        if done and op.error:
            body["error"] = op.error
        return self._json(body)


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
