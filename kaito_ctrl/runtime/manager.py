"""The manager: shared informers, controllers, leader election, probes and metrics, with an orderly life.

Start: servers, then informers (waiting for their caches with a timeout), then — only while holding the
leader Lease — the controllers. Stop, in order: controllers (draining their queues), informers, servers,
and the lease last (released if configured). Losing the lease, or the elector task ending for any reason,
cancels the controllers and leader-only tasks at once (no drain) and makes ``run`` return False, so the
process exits non-zero and restarts clean, as controller-runtime does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.informer import InformerFactory, ListWatchClient
from kaito_ctrl.kube.leaderelection import LeaderElectionConfig, LeaderElector, LeaseClient
from kaito_ctrl.runtime.controller import Controller
from kaito_ctrl.runtime.server import Check, Checks, HTTPServer, build_app
from kaito_ctrl.runtime.supervisor import SupervisedTask

log = structlog.get_logger(__name__)

Runnable = Callable[[], Coroutine[Any, Any, None]]


def _runnable_name(runnable: Runnable) -> str:
    owner = getattr(runnable, "__self__", None)
    base = getattr(runnable, "__name__", "task")
    return f"{type(owner).__name__}.{base}" if owner is not None else base


class Manager:
    def __init__(
        self,
        client: ListWatchClient,
        *,
        leader_election: LeaderElectionConfig | None = None,
        lease_client: LeaseClient | None = None,
        metrics_address: str | None = None,
        probe_address: str | None = None,
        sync_timeout: float = 60.0,
        drain_timeout: float = 30.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.client = client
        self.clock = clock
        self.informers = InformerFactory(client, clock=clock)
        self.controllers: list[Controller] = []
        self.sync_timeout = sync_timeout
        self.drain_timeout = drain_timeout
        self.healthz = Checks()
        self.readyz = Checks()
        self._leader_runnables: list[SupervisedTask] = []
        self._runnables: list[SupervisedTask] = []
        self._leader_tasks: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._lost = False
        self.elector: LeaderElector | None = None
        if leader_election is not None:
            lc = lease_client if lease_client is not None else client
            self.elector = LeaderElector(lc, leader_election, clock=clock)  # type: ignore[arg-type]
        self._servers: list[HTTPServer] = []
        if probe_address:
            self._servers.append(
                HTTPServer(build_app(self.healthz, self.readyz, serve_metrics=False), probe_address)
            )
        if metrics_address:
            self._servers.append(
                HTTPServer(build_app(Checks(), Checks(), serve_metrics=True), metrics_address)
            )
        self.healthz.add("ping", lambda: True)
        self.readyz.add("informers-synced", self.informers.has_synced)

    # ------------------------------------------------------------------ registration
    def add_controller(self, controller: Controller) -> None:
        self.controllers.append(controller)

    def add_runnable(self, runnable: Runnable, *, needs_leader: bool, name: str | None = None) -> None:
        """A long-running coroutine (a GC loop, a webhook server): leader-only or on every replica. It runs
        supervised (restarted with backoff if it raises) and has a /healthz check ``task:<name>``."""
        task = SupervisedTask(name or _runnable_name(runnable), runnable, clock=self.clock)
        (self._leader_runnables if needs_leader else self._runnables).append(task)
        self.healthz.add(f"task:{task.name}", task.healthy)

    def add_healthz_check(self, name: str, check: Check) -> None:
        self.healthz.add(name, check)

    def add_readyz_check(self, name: str, check: Check) -> None:
        self.readyz.add(name, check)

    @property
    def servers(self) -> list[HTTPServer]:
        return self._servers

    @property
    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    # ------------------------------------------------------------------ life
    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> bool:
        """Run until :meth:`stop` (True) or until leadership is lost (False)."""
        for server in self._servers:
            await server.start()
        self.informers.start_all()
        self._tasks = [asyncio.create_task(r.run(), name=r.name) for r in self._runnables]
        synced = await self.informers.wait_for_sync(self.sync_timeout)
        if not synced:
            log.warning("caches not synced in time; readiness stays false until they are")
        election: asyncio.Task[None] | None = None
        if self.elector is not None:
            election = asyncio.create_task(self.elector.run(self._start_leading, self._stopped_leading))
        else:
            self._start_leading()
        try:
            stop = asyncio.ensure_future(self._stop.wait())
            watched = {stop} if election is None else {stop, election}
            try:
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if election is not None and election.done() and not self._stop.is_set():
                # The elector ended without reporting loss: it crashed. Fail closed: we may no longer lead.
                self._lost = True
                log.error("leader election task ended unexpectedly; treating it as loss of leadership",
                          error=repr(election.exception()) if not election.cancelled() else "cancelled")  # fmt: skip
        finally:
            await self._shutdown(election)
        return not self._lost

    def _start_leading(self) -> None:
        log.info("starting controllers", controllers=[c.name for c in self.controllers])
        for c in self.controllers:
            c.start()
        self._leader_tasks = [asyncio.create_task(r.run(), name=r.name) for r in self._leader_runnables]

    def _stopped_leading(self) -> None:
        self._lost = True
        self._stop.set()

    async def _shutdown(self, election: asyncio.Task[None] | None) -> None:
        if self._lost:
            # Leadership lost: a successor may already be writing, so stop at once, without draining
            # (controller-runtime likewise skips graceful shutdown on unintended loss). Leader-only tasks go first.
            for t in self._leader_tasks:
                t.cancel()
            await asyncio.gather(*(c.stop(0) for c in self.controllers))
        else:
            await asyncio.gather(*(c.stop(self.drain_timeout) for c in self.controllers))
        for t in [*self._leader_tasks, *self._tasks]:
            t.cancel()
        for t in [*self._leader_tasks, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.informers.stop_all()
        for server in self._servers:
            await server.stop()
        if election is not None:
            election.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await election
