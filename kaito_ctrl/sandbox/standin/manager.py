"""Runs one stand-in server per inference pod on the sandbox's kwok nodes, and points kwok at it.

For every Running pod whose main container starts a Kaito inference server (see
:func:`~kaito_ctrl.sandbox.standin.entrypoint.parse_entrypoint`), the manager starts
``python -m kaito_ctrl.sandbox.standin`` on a free 127.0.0.1 port, then writes two kwok objects named after the
pod: a ``PortForward`` sending the container's port to that process (so ``kubectl port-forward`` to the pod or
its Service reaches it) and a ``Logs`` pointing ``kubectl logs`` at the process's output. When the pod goes (scale
down, Workspace deleted, rollout), the process is stopped and the objects deleted. Pods are keyed by uid, so a
StatefulSet pod recreated under the same name gets a fresh stand-in.

Run by the sandbox supervisor: ``python -m kaito_ctrl.sandbox.standin.manager --kubeconfig K --state-dir D``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from kaito_ctrl import logsetup
from kaito_ctrl.api import entrypoint_check
from kaito_ctrl.api.labels import LABEL_WORKSPACE
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import NotFound
from kaito_ctrl.kube.informer import SharedInformer
from kaito_ctrl.kube.resources import PODS, Resource
from kaito_ctrl.sandbox.standin.entrypoint import Entrypoint, EntrypointError, parse_entrypoint, pod_adapters
from kaito_ctrl.testing.controlplane import free_port
from kaito_ctrl.testing.kwokextras import ENTRYPOINT_REFUSED

log = structlog.get_logger(__name__)

PORT_FORWARDS = Resource("kwok.x-k8s.io", "v1alpha1", "portforwards", "PortForward")
LOGS = Resource("kwok.x-k8s.io", "v1alpha1", "logs", "Logs")
FIELD_MANAGER = "kaito-sandbox-standin"


@dataclass
class StandIn:
    namespace: str
    name: str
    container: str
    entry: Entrypoint
    port: int
    log_file: Path
    process: asyncio.subprocess.Process


def inference_container(pod: dict[str, Any]) -> tuple[str, Entrypoint] | None:
    """(container name, entry point) of the pod's inference server, or None when it runs none."""
    if any(o.get("kind") == "Job" for o in pod["metadata"].get("ownerReferences") or []):
        return None  # tuning pods run to completion; nothing to serve
    annotations = pod["metadata"].get("annotations") or {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        try:
            entry = parse_entrypoint(container, annotations)
        except EntrypointError:
            continue
        if not entry.adapters:
            entry = dataclasses.replace(entry, adapters=pod_adapters(pod))
        return str(container["name"]), entry
    return None


_KAITO_IMAGES = "mcr.microsoft.com/aks/kaito/"


def entrypoint_refusal(pod: dict[str, Any]) -> str | None:
    """What the real entry point of a Workspace's inference pod would exit with, or None when it would start.

    Only containers of Kaito's own images are judged (their entry points are known); a user's template image
    runs whatever it runs. Tuning pods are left alone."""
    meta = pod["metadata"]
    if LABEL_WORKSPACE not in (meta.get("labels") or {}):
        return None
    if any(o.get("kind") == "Job" for o in meta.get("ownerReferences") or []):
        return None
    for container in (pod.get("spec") or {}).get("containers") or []:
        if str(container.get("image") or "").startswith(_KAITO_IMAGES):
            refused = entrypoint_check.refusal(container)
            if refused is not None:
                return f"container {container.get('name')}: {refused}"
    return None


def wants_stand_in(pod: dict[str, Any]) -> bool:
    meta, status = pod["metadata"], pod.get("status") or {}
    return (
        not meta.get("deletionTimestamp")
        and status.get("phase") == "Running"
        and bool((pod.get("spec") or {}).get("nodeName"))
    )


class StandInManager:
    def __init__(self, kube: KubeClient, state_dir: Path) -> None:
        self.kube = kube
        self.state_dir = state_dir
        self.running: dict[str, StandIn] = {}
        self.informer = SharedInformer(kube, PODS)
        self._changed = asyncio.Event()

    def _poke(self, *_: Any) -> None:
        self._changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        self.informer.add_event_handler(self._poke, self._poke, self._poke)
        self.informer.start()
        try:
            while not stop.is_set():
                await self.sync()
                self._changed.clear()
                # Woken by any pod event; the timeout also notices a stand-in process that exited.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=5)
        finally:
            await self.informer.stop()
            for uid in list(self.running):
                await self._stop(uid)

    async def sync(self) -> None:
        desired: dict[str, dict[str, Any]] = {}
        for pod in self.informer.store.list():
            if not wants_stand_in(pod):
                continue
            if ENTRYPOINT_REFUSED in (pod["metadata"].get("annotations") or {}):
                continue  # kwok shows it crash-looping; nothing to serve
            refused = entrypoint_refusal(pod)
            if refused is not None:
                await self._refuse(pod, refused)
            elif inference_container(pod) is not None:
                desired[pod["metadata"]["uid"]] = pod
        for uid in [
            u for u, s in self.running.items() if u not in desired or s.process.returncode is not None
        ]:
            await self._stop(uid)
        for uid, pod in desired.items():
            if uid not in self.running:
                try:
                    await self._start(uid, pod)
                except Exception as e:  # one pod's failure must not stop the others
                    log.warning("stand-in not started", pod=pod["metadata"]["name"], error=str(e)[:300])

    async def _refuse(self, pod: dict[str, Any], reason: str) -> None:
        """Mark the pod so kwok's ``pod-entrypoint-refused`` stage shows what a node would: the container exits
        with the entry point's complaint and restarts with back-off (CrashLoopBackOff)."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        patch = {"metadata": {"annotations": {ENTRYPOINT_REFUSED: reason[:1000]}}}
        try:
            await self.kube.merge_patch(
                PODS, name, patch, ns, resource_version=pod["metadata"]["resourceVersion"]
            )
        except NotFound:
            return
        except Exception as e:  # the next pod event retries
            log.warning("could not mark a refused entry point", pod=f"{ns}/{name}", error=str(e)[:300])
            return
        log.info("entry point refused; the pod will crash-loop", pod=f"{ns}/{name}", reason=reason[:300])

    async def _start(self, uid: str, pod: dict[str, Any]) -> None:
        found = inference_container(pod)
        assert found is not None
        container, entry = found
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        port = free_port()
        log_dir = self.state_dir / "pods"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = log_dir / f"{ns}_{name}_{uid}.log"
        # The container log (CRI format, what kubectl logs shows) and, beside it, the process's raw output.
        with log_file.with_suffix(".out").open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kaito_ctrl.sandbox.standin",
                "--entrypoint", json.dumps(entry.to_json()), "--port", str(port), "--log-file", str(log_file),
                stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        self.running[uid] = StandIn(ns, name, container, entry, port, log_file, process)
        await self._wait_listening(port, process)
        owner = {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}
        meta = {"name": name, "namespace": ns, "ownerReferences": [owner]}
        await self.kube.apply(
            PORT_FORWARDS,
            {
                "apiVersion": PORT_FORWARDS.api_version, "kind": "PortForward", "metadata": meta,
                "spec": {"forwards": [{"ports": [entry.port], "target": {"port": port, "address": "127.0.0.1"}}]},
            },
            field_manager=FIELD_MANAGER,
        )  # fmt: skip
        await self.kube.apply(
            LOGS,
            {
                "apiVersion": LOGS.api_version, "kind": "Logs", "metadata": meta,
                "spec": {"logs": [{"containers": [container], "logsFile": str(log_file), "follow": True}]},
            },
            field_manager=FIELD_MANAGER,
        )  # fmt: skip
        log.info(
            "stand-in started", pod=f"{ns}/{name}", preset=entry.served_model_name, runtime=entry.runtime,
            api=entry.api, port=port,
        )  # fmt: skip

    @staticmethod
    async def _wait_listening(port: int, process: asyncio.subprocess.Process, timeout: float = 20) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"the stand-in exited with {process.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)  # polling interval of a deadline-bounded wait
        raise TimeoutError("the stand-in did not listen in time")

    async def _stop(self, uid: str) -> None:
        standin = self.running.pop(uid)
        if standin.process.returncode is None:
            standin.process.terminate()
            try:
                await asyncio.wait_for(standin.process.wait(), timeout=10)
            except TimeoutError:
                standin.process.kill()
                await standin.process.wait()
        # The pod's name may already belong to a newer pod (StatefulSet): leave its objects alone.
        if any((s.namespace, s.name) == (standin.namespace, standin.name) for s in self.running.values()):
            return
        for res in (PORT_FORWARDS, LOGS):
            with contextlib.suppress(NotFound):
                await self.kube.delete(res, standin.name, standin.namespace)
        log.info("stand-in stopped", pod=f"{standin.namespace}/{standin.name}")


async def _main(kubeconfig: str, state_dir: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    kube = await KubeClient.from_kubeconfig(kubeconfig)
    try:
        await StandInManager(kube, state_dir).run(stop)
    finally:
        await kube.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaito_ctrl.sandbox.standin.manager")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logsetup.configure(fmt="json")
    return asyncio.run(_main(args.kubeconfig, args.state_dir))


if __name__ == "__main__":
    sys.exit(main())
