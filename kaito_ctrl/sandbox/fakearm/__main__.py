"""Run the fake ARM server: ``python -m kaito_ctrl.sandbox.fakearm --port P --state-dir D``.

When it listens it prints one JSON line (url, CA file, admin URL, cluster coordinates) and writes the same to
``<state-dir>/ready.json``; SIGTERM or SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import orjson

from kaito_ctrl import logsetup
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.sandbox.fakearm.server import ADMIN, FakeArmServer
from kaito_ctrl.sandbox.fakearm.state import FakeArmConfig


def _quota(value: str) -> tuple[str, int]:
    family, _, limit = value.partition("=")
    if not family or not limit.isdigit():
        raise argparse.ArgumentTypeError(f"expected FAMILY=LIMIT, got {value!r}")
    return family, int(limit)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = FakeArmConfig()
    p = argparse.ArgumentParser(prog="python -m kaito_ctrl.sandbox.fakearm", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument(
        "--state-dir", type=Path, help="keep pools, operations and the TLS CA here across restarts"
    )
    p.add_argument("--subscription-id", default=d.subscription_id)
    p.add_argument("--resource-group", default=d.resource_group)
    p.add_argument("--cluster-name", default=d.cluster_name)
    p.add_argument("--location", default=d.location)
    p.add_argument("--node-resource-group", default="")
    p.add_argument("--orchestrator-version", default=d.orchestrator_version)
    p.add_argument("--create-seconds", type=float, default=d.create_seconds)
    p.add_argument("--update-seconds", type=float, default=d.update_seconds)
    p.add_argument("--delete-seconds", type=float, default=d.delete_seconds)
    p.add_argument(
        "--retry-after", type=int, default=d.retry_after, help="Retry-After on LRO answers (0: none)"
    )
    p.add_argument("--page-size", type=int, default=d.page_size)
    p.add_argument(
        "--cluster-lock", action="store_true", help="one agent pool operation at a time, as old AKS"
    )
    p.add_argument("--token", help="bearer token clients must present (default: any)")
    p.add_argument("--quota", type=_quota, action="append", default=[], metavar="FAMILY=LIMIT")
    p.add_argument("--default-family-limit", type=int, default=d.default_family_limit)
    p.add_argument("--regional-limit", type=int, default=d.regional_limit)
    p.add_argument("--restricted-sku", action="append", default=[], help="NotAvailableForSubscription here")
    p.add_argument("--kubeconfig", help="join a Node per VM into this cluster (kwok-managed)")
    p.add_argument("--join-delay", type=float, default=1.0, help="seconds from pool success to its Node")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> FakeArmConfig:
    return FakeArmConfig(
        subscription_id=args.subscription_id,
        resource_group=args.resource_group,
        cluster_name=args.cluster_name,
        location=args.location,
        node_resource_group=args.node_resource_group,
        orchestrator_version=args.orchestrator_version,
        create_seconds=args.create_seconds,
        update_seconds=args.update_seconds,
        delete_seconds=args.delete_seconds,
        retry_after=args.retry_after,
        page_size=args.page_size,
        cluster_lock=args.cluster_lock,
        token=args.token,
        quota=dict(args.quota),
        default_family_limit=args.default_family_limit,
        regional_limit=args.regional_limit,
        restricted_skus=set(args.restricted_sku),
    )


async def serve(args: argparse.Namespace) -> None:
    kube = await KubeClient.from_kubeconfig(args.kubeconfig) if args.kubeconfig else None
    server = FakeArmServer(config_from(args), state_dir=args.state_dir, kube=kube, join_delay=args.join_delay)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        url = await server.start(args.host, args.port)
        c = server.config
        ready = {
            "url": url,
            "ca_file": server.ca_file,
            "admin": url + ADMIN,
            "subscription_id": c.subscription_id,
            "resource_group": c.resource_group,
            "cluster_name": c.cluster_name,
            "location": c.location,
            "node_resource_group": c.node_resource_group,
        }
        line = orjson.dumps(ready)
        if args.state_dir is not None:
            (args.state_dir / "ready.json").write_bytes(line)
        sys.stdout.write(line.decode() + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await server.stop()
        if kube is not None:
            await kube.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logsetup.configure(args.log_level, "json")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
