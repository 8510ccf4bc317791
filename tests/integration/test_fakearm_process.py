"""The fake ARM server as a process (``python -m ...cloud.fake``): it announces itself, serves the provider
configured from the environment, and a restart on the same state dir keeps pools, operations and its CA."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kaito_ctrl.controllers.provisioner.cloud.azure import AzureProvider
from kaito_ctrl.controllers.provisioner.cloud.base import AgentPoolSpec
from kaito_ctrl.controllers.provisioner.cloud.config import AzureSettings

MODULE = "kaito_ctrl.sandbox.fakearm"


class FakeProcess:
    def __init__(self, proc: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.proc = proc
        self.info = info

    def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        ctx = ssl.create_default_context(cafile=self.info["ca_file"])
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.info["admin"] + path, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return json.loads(r.read())

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 15)


async def start_fake(state_dir: Path, *args: str) -> FakeProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", MODULE, "--state-dir", str(state_dir), "--retry-after", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line, "the fake exited before announcing itself"
    return FakeProcess(proc, json.loads(line))


@pytest.fixture
async def procs() -> AsyncIterator[list[FakeProcess]]:
    started: list[FakeProcess] = []
    yield started
    for p in started:
        await p.stop()


def read_bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def provider_from_env(info: dict[str, Any]) -> AzureProvider:
    env = {
        "AZURE_SUBSCRIPTION_ID": info["subscription_id"],
        "AZURE_RESOURCE_GROUP": info["resource_group"],
        "AZURE_CLUSTER_NAME": info["cluster_name"],
        "LOCATION": info["location"],
        "ARM_BASE_URL": info["url"],
        "ARM_CA_BUNDLE": info["ca_file"],
        "ARM_STATIC_TOKEN": "fake-token",
        "ARM_POLLING_INTERVAL": "0.05",
    }
    return AzureProvider(AzureSettings.from_env(env))


async def test_restart_keeps_pools_operations_and_ca(tmp_path: Path, procs: list[FakeProcess]) -> None:
    first = await start_fake(tmp_path, "--create-seconds", "0.3", "--cluster-name", "proc-aks")
    procs.append(first)
    info = first.info
    assert json.loads(read_bytes(tmp_path / "ready.json")) == info
    assert info["url"].startswith("https://127.0.0.1:") and info["cluster_name"] == "proc-aks"
    ca = read_bytes(info["ca_file"])
    async with provider_from_env(info) as provider:
        assert (await provider.create_pool(AgentPoolSpec("ws1", "Standard_NC12s_v3"))).succeeded
    # A create that is still running when the fake stops.
    first.admin("/config", {"create_seconds": 3})
    async with provider_from_env(info) as provider:
        creating = asyncio.create_task(provider.create_pool(AgentPoolSpec("ws2", "Standard_NC6s_v3")))
        deadline = time.monotonic() + 10
        while not any(p["name"] == "ws2" for p in first.admin("/pools")):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        creating.cancel()
    assert await first.stop() == 0

    port = info["url"].rsplit(":", 1)[1]
    second = await start_fake(tmp_path, "--port", port, "--cluster-name", "proc-aks")
    procs.append(second)
    assert second.info["url"] == info["url"] and read_bytes(second.info["ca_file"]) == ca
    async with provider_from_env(second.info) as provider:
        ws1 = await provider.get_pool("ws1")
        assert ws1 is not None and ws1.succeeded
        ws2 = await provider.get_pool("ws2")
        assert ws2 is not None and ws2.provisioning_state == "Creating"
        assert (await provider.create_pool(AgentPoolSpec("ws2", "Standard_NC6s_v3"))).succeeded
    assert "PUT pool" not in second.admin("/requests")["counts"], (
        "the restarted create was resumed, not redone"
    )
