"""``kaito-ctrl run``: the controller process (manager, leader election, probes, metrics, webhook, and the
controllers selected with ``--controllers``)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from kaito_ctrl import logsetup
from kaito_ctrl.api import podsecurity
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.config import KubeconfigError, in_cluster_namespace
from kaito_ctrl.kube.errors import NotFound
from kaito_ctrl.kube.leaderelection import LeaderElectionConfig
from kaito_ctrl.kube.resources import CONFIGMAPS, NAMESPACES
from kaito_ctrl.runtime.gctuning import tune_gc
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.settings import Settings
from kaito_ctrl.webhook.certs import CertPolicy
from kaito_ctrl.webhook.registration import ClientConfig, WebhookRunner
from kaito_ctrl.webhook.server import WebhookServer

log = structlog.get_logger(__name__)

# Controller name -> module with ``setup(manager, client, settings)``.
CONTROLLER_MODULES = {
    "workspace": "kaito_ctrl.controllers.workspace.setup",
    "provisioner": "kaito_ctrl.controllers.provisioner.setup",
}


def namespace_allows_reader(client: KubeClient) -> Callable[[str], Awaitable[bool]]:
    """Reads a namespace's admin annotation for the Pod Security check (a missing namespace allows nothing)."""

    async def allows(namespace: str) -> bool:
        try:
            return podsecurity.namespace_allows(await client.get(NAMESPACES, namespace))
        except NotFound:
            return False

    return allows


def build_webhook(client: KubeClient, settings: Settings) -> WebhookRunner:
    host = settings.webhook_url_host
    client_config = (
        ClientConfig(url_base=f"https://{host}:{settings.webhook_port}")
        if host
        else ClientConfig(service_namespace=settings.namespace, service_name=settings.webhook_service)
    )
    ips = (host,) if host and host[0].isdigit() else ("127.0.0.1",)
    policy = CertPolicy(settings.webhook_service, settings.namespace, ip_addresses=ips)

    async def get_configmap(namespace: str, name: str) -> dict[str, Any]:
        return await client.get(CONFIGMAPS, name, namespace)

    server = WebhookServer(
        host or "0.0.0.0",
        settings.webhook_port,
        node_provisioner=settings.node_provisioner,
        get_configmap=get_configmap,
        namespace_allows=namespace_allows_reader(client) if settings.pod_security_baseline else None,
    )
    return WebhookRunner(client, policy, server, client_config)


def setup_controllers(manager: Manager, client: KubeClient, settings: Settings) -> list[str]:
    started = []
    for name in [c.strip() for c in settings.controllers.split(",") if c.strip()]:
        module_name = CONTROLLER_MODULES.get(name)
        if module_name is None:
            raise SystemExit(f"unknown controller {name!r}; known: {', '.join(CONTROLLER_MODULES)}")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and module_name.startswith(e.name):
                log.warning("controller not available in this build; skipped", controller=name)
                continue
            raise
        module.setup(manager, client, settings)
        started.append(name)
    return started


async def run_manager(settings: Settings) -> int:
    tune_gc()
    client = await KubeClient.auto(
        settings.kubeconfig, qps=settings.kube_client_qps, burst=settings.kube_client_burst
    )
    leader = None
    if settings.leader_elect:
        leader = LeaderElectionConfig(
            name=settings.leader_election_id,
            namespace=settings.namespace,
            lease_duration=settings.lease_duration,
            renew_deadline=settings.renew_deadline,
            retry_period=settings.retry_period,
            release_on_cancel=settings.release_on_cancel,
        )
    manager = Manager(
        client,
        leader_election=leader,
        metrics_address=settings.metrics_bind_address,
        probe_address=settings.health_probe_bind_address,
        sync_timeout=settings.sync_timeout,
    )
    if settings.webhook:
        webhook = build_webhook(client, settings)
        manager.add_runnable(webhook.run, needs_leader=False, name="webhook")
        manager.add_readyz_check("webhook", webhook.ready.is_set)
    controllers = setup_controllers(manager, client, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, manager.stop)
    log.info("kaito-ctrl starting", controllers=controllers, namespace=settings.namespace,
             node_provisioner=settings.node_provisioner, leader_elect=settings.leader_elect,
             kube_client_qps=settings.kube_client_qps, kube_client_burst=settings.kube_client_burst)  # fmt: skip
    try:
        ok = await manager.run()
    finally:
        await client.close()
    if not ok:
        log.error("leader election lost; exiting so a fresh process can start")
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_sources(args)
    except ValueError as e:
        raise SystemExit(f"kaito-ctrl run: {e}") from None
    if not getattr(args, "namespace", None) and "KAITO_NAMESPACE" not in os.environ:
        settings.namespace = in_cluster_namespace(settings.namespace)
    logsetup.configure(settings.log_level, settings.log_format)  # type: ignore[arg-type]
    try:
        return asyncio.run(run_manager(settings))
    except KubeconfigError as e:
        raise SystemExit(f"kaito-ctrl run: {e}") from None


RUN_EXAMPLES = """\
examples:
  kaito-ctrl run                                   # in a cluster: both controllers, leader election, webhook
  KUBECONFIG=~/.kube/config kaito-ctrl run --node-provisioner byo --no-webhook
  kaito-ctrl run --controllers workspace --watch-namespace team-a --no-leader-elect
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the controllers (in a cluster, or against KUBECONFIG)",
        description="Run the workspace controller and the node provisioner. Every flag also reads an "
        "environment variable: --node-provisioner is KAITO_NODE_PROVISIONER, and so on.",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    Settings.add_arguments(p)
    p.set_defaults(func=run)
