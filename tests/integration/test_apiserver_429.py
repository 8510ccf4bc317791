"""A 429 at the wire on the way to the real apiserver: a loopback proxy in front of it refuses the first attempt
of every write with 429 + Retry-After (as API Priority and Fairness does). The Workspace controller, talking
through the proxy, waits each one out, counts it and still brings a BYO Workspace to its settled state with no
failed reconcile and no condition naming the throttling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from kaito_ctrl import metrics
from kaito_ctrl.controllers.workspace.setup import setup
from kaito_ctrl.kube import conditions as cond
from kaito_ctrl.kube import config as kconfig
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import NotFound, TooManyRequests
from kaito_ctrl.kube.resources import WORKSPACES, WORKSPACES_V1ALPHA1
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.settings import Settings
from kaito_ctrl.testing.controlplane import ControlPlane
from kaito_ctrl.testing.gpunodes import GpuNodeSpec

REPO = Path(__file__).resolve().parents[2]
WRITES = ("POST", "PUT", "PATCH", "DELETE")
APF_429 = {
    "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429, "reason": "TooManyRequests",
    "message": "too many requests, please try again later",
}  # fmt: skip


class RefusingProxy:
    """Plain HTTP on loopback in, the apiserver's TLS and credentials out; the first attempt of each distinct
    write (method and path) is answered 429 with Retry-After: 1 and never reaches the apiserver."""

    def __init__(self, upstream: kconfig.ConnectionConfig) -> None:
        self.upstream = upstream
        self.refused: list[tuple[str, str]] = []
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.upstream.ssl_context())
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = (request.method, request.path)
        if request.method in WRITES and key not in self.refused:
            self.refused.append(key)
            return web.json_response(APF_429, status=429, headers={"Retry-After": "1"})
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k in ("Accept", "Content-Type", "User-Agent")}
        auth = self.upstream.current_authorization()
        if auth:
            headers["Authorization"] = auth
        async with self._session.request(
            request.method, self.upstream.server + request.path_qs, headers=headers,
            data=await request.read(), timeout=aiohttp.ClientTimeout(total=None),
        ) as up:  # fmt: skip
            out = web.StreamResponse(status=up.status)
            out.content_type = up.content_type
            await out.prepare(request)
            async for chunk in up.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out


@pytest.fixture
async def proxied(control_plane: ControlPlane) -> AsyncIterator[tuple[RefusingProxy, KubeClient, KubeClient]]:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh")
    proxy = RefusingProxy(await kconfig.from_kubeconfig(control_plane.kubeconfig))
    await proxy.start()
    through = KubeClient(kconfig.ConnectionConfig(server=proxy.url))
    direct = await KubeClient.from_kubeconfig(control_plane.kubeconfig)
    try:
        yield proxy, through, direct
    finally:
        await through.close()
        await direct.close()
        await proxy.stop()


def _sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_429s_are_waited_out_and_never_fail_the_workspace(
    control_plane: ControlPlane, namespace: str, proxied: tuple[RefusingProxy, KubeClient, KubeClient]
) -> None:
    proxy, through, direct = proxied
    label = f"apf-{namespace}"
    ws: dict[str, Any] = yaml.safe_load((REPO / "examples/inference/kaito_workspace_phi_3.yaml").read_text())
    # A BYO node of the seed's instance type (Standard_NC6s_v3: one V100).
    control_plane.add_gpu_node(
        GpuNodeSpec(
            f"apf-{namespace}",
            instance_type=ws["resource"]["instanceType"],
            gpus=1,
            cpu="6",
            memory="112Gi",
            extra_labels={"apps": label},
        )
    )
    ws["resource"]["labelSelector"]["matchLabels"]["apps"] = label
    name = ws["metadata"]["name"]
    host = proxy.url.removeprefix("http://")
    retries_before = sum(_sample("rest_client_request_retries_total", {"code": "429", "verb": v, "host": host})
                         for v in WRITES)  # fmt: skip
    errors_before = _sample("controller_runtime_reconcile_errors_total", {"controller": "workspace"})
    settings = Settings(watch_namespace=namespace, node_provisioner="byo", leader_elect=False, webhook=False)
    manager = Manager(through, sync_timeout=30)
    setup(manager, through, settings)
    task = asyncio.create_task(manager.run())
    try:
        await direct.create(WORKSPACES_V1ALPHA1, ws, namespace)
        deadline = time.monotonic() + 90
        live: dict[str, Any] = {}
        while True:
            try:
                live = await direct.get(WORKSPACES, name, namespace)
            except (NotFound, TooManyRequests):
                live = {}
            inference = cond.get_condition(live, "InferenceReady") if live else None
            settled = (
                live
                and cond.is_true(live, "ResourceReady")
                and inference is not None
                and live["metadata"].get("finalizers")
                and inference.get("message") != "the workload is being created"
            )
            if settled:
                break
            assert not task.done(), f"manager ended: {task}"
            assert time.monotonic() < deadline, (
                f"Workspace did not settle through the proxy: {live.get('status')}"
            )
            await asyncio.sleep(0.2)  # polling interval of a deadline-bounded wait
        # Deleted while the controller runs, so the namespace goes without a finalizer left behind.
        await direct.delete(WORKSPACES, name, namespace)
        while True:
            try:
                await direct.get(WORKSPACES, name, namespace)
            except NotFound:
                break
            assert time.monotonic() < deadline + 30, "the finalizer was not released through the proxy"
            await asyncio.sleep(0.2)  # polling interval of a deadline-bounded wait
    finally:
        manager.stop()
        await task
    writes = [
        k for k in proxy.refused if "/workspaces/" in k[1] or "/services" in k[1] or "/deployments" in k[1]
    ]
    assert len(writes) >= 3, f"the proxy refused too few of the controller's writes: {proxy.refused}"
    retries = sum(_sample("rest_client_request_retries_total", {"code": "429", "verb": v, "host": host})
                  for v in WRITES) - retries_before  # fmt: skip
    assert retries == len(proxy.refused)
    assert _sample("controller_runtime_reconcile_errors_total", {"controller": "workspace"}) == errors_before
    for c in live["status"]["conditions"]:
        assert "TooManyRequests" not in f"{c.get('reason')} {c.get('message')}", c
