"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

Expiry is judged by *local* observation time: a lease counts as held until ``leaseDurationSeconds`` after we
last saw its record change, whatever the holder's clock says, so clock skew between replicas cannot cause
two leaders. Renewal tries the cached lease first (fast path), then re-reads it (slow path); no successful
renewal within ``renew_deadline`` means leadership is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from kaito_ctrl import metrics
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.errors import ApiError, Conflict, NotFound
from kaito_ctrl.kube.protocols import CreateReplace
from kaito_ctrl.kube.resources import LEASES

log = structlog.get_logger(__name__)


LeaseClient = CreateReplace


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:300]


def micro_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElectionConfig:
    name: str
    namespace: str
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = False

    def validate(self) -> None:
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("lease duration must be greater than the renew deadline")
        if not self.renew_deadline > 1.2 * self.retry_period:
            raise ValueError("renew deadline must be greater than 1.2 x retry period")


class LeaderElector:
    def __init__(
        self,
        client: LeaseClient,
        config: LeaderElectionConfig,
        *,
        clock: Clock = REAL_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        config.validate()
        self.client = client
        self.config = config
        self.clock = clock
        self._rng = rng or random.Random()
        self._lease: dict[str, Any] | None = None  # last lease object we wrote or read
        self._observed_record: dict[str, Any] | None = None
        self._observed_time = 0.0
        self._leading = False
        self._gauge = metrics.LEADER_ELECTION_MASTER_STATUS.labels(config.name)
        self._slowpath = metrics.LEADER_ELECTION_SLOWPATH.labels(config.name)
        self._gauge.set(0)
        self._log = log.bind(lease=f"{config.namespace}/{config.name}", identity=config.identity)

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def holder(self) -> str:
        return str((self._observed_record or {}).get("holderIdentity") or "")

    # ------------------------------------------------------------------ one attempt
    def _record(self, lease: dict[str, Any]) -> dict[str, Any]:
        return dict(lease.get("spec") or {})

    def _new_spec(self, old: dict[str, Any] | None) -> dict[str, Any]:
        now = micro_time(self.clock.now())
        spec: dict[str, Any] = {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": int(self.config.lease_duration),
            "renewTime": now,
            "acquireTime": now,
            "leaseTransitions": 0,
        }
        if old:
            transitions = int(old.get("leaseTransitions") or 0)
            if old.get("holderIdentity") == self.config.identity:
                spec["acquireTime"] = old.get("acquireTime") or now
                spec["leaseTransitions"] = transitions
            else:
                spec["leaseTransitions"] = transitions + 1
        return spec

    async def try_acquire_or_renew(self) -> bool:
        cfg = self.config
        # Fast path: we lead and hold a fresh copy; update it without reading first.
        if self._leading and self._lease is not None:
            lease = dict(self._lease, spec=self._new_spec(self._record(self._lease)))
            try:
                self._lease = await self.client.replace(LEASES, lease)
                self._observe(self._record(self._lease))
                return True
            except ApiError:
                self._slowpath.inc()
        try:
            lease = await self.client.get(LEASES, cfg.name, cfg.namespace)
        except NotFound:
            obj = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": self._new_spec(None),
            }
            try:
                self._lease = await self.client.create(LEASES, obj, cfg.namespace)
            except Conflict:
                return False
            self._observe(self._record(self._lease))
            return True
        record = self._record(lease)
        if record != self._observed_record:
            self._observe(record)
        holder = record.get("holderIdentity") or ""
        held_by_other = holder and holder != cfg.identity
        duration = float(record.get("leaseDurationSeconds") or cfg.lease_duration)
        if held_by_other and self._observed_time + duration > self.clock.monotonic():
            return False
        lease["spec"] = self._new_spec(record)
        try:
            self._lease = await self.client.replace(LEASES, lease)
        except Conflict:
            return False
        self._observe(self._record(self._lease))
        return True

    def _observe(self, record: dict[str, Any]) -> None:
        self._observed_record = record
        self._observed_time = self.clock.monotonic()

    # ------------------------------------------------------------------ loops
    async def _sleep_jittered(self, seconds: float) -> None:
        await self.clock.sleep(seconds * (1 + 0.2 * self._rng.random()))

    async def acquire(self) -> None:
        """Return once we hold the lease (retrying every retry period with 1.2 jitter)."""
        while True:
            try:
                if await self.try_acquire_or_renew():
                    self._leading = True
                    self._gauge.set(1)
                    self._log.info("acquired leader lease")
                    return
            except Exception as e:  # whatever the transport raises, this attempt failed; try again
                self._log.warning("leader election attempt failed", error=_describe(e))
            await self._sleep_jittered(self.config.retry_period)

    async def _attempt_within(self, seconds: float) -> bool:
        """One renewal, abandoned after ``seconds`` on this elector's clock (so a black-holed connection
        cannot hold leadership past the deadline, and tests can drive it with a fake clock)."""
        attempt = asyncio.ensure_future(self.try_acquire_or_renew())
        timer = asyncio.ensure_future(self.clock.sleep(max(seconds, 0.0)))
        try:
            done, _ = await asyncio.wait({attempt, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not attempt.done():
                attempt.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await attempt
        if attempt not in done or attempt.cancelled():
            raise TimeoutError(f"lease renewal did not finish within {seconds:.1f}s")
        return attempt.result()

    async def renew_until_lost(self) -> None:
        """Keep renewing; return once no renewal has succeeded for ``renew_deadline`` (client-go's bound).

        Any exception from an attempt is a failed renewal: a disconnect the client did not anticipate must
        end leadership, never escape with the manager still believing it leads."""
        last_renew = self.clock.monotonic()
        while True:
            remaining = last_renew + self.config.renew_deadline - self.clock.monotonic()
            await self.clock.sleep(min(self.config.retry_period, max(remaining, 0.0)))
            remaining = last_renew + self.config.renew_deadline - self.clock.monotonic()
            ok = False
            if remaining > 0:
                try:
                    ok = await self._attempt_within(remaining)
                except Exception as e:
                    self._log.warning("lease renewal failed", error=_describe(e))
            now = self.clock.monotonic()
            if ok:
                last_renew = now
            elif now - last_renew >= self.config.renew_deadline:
                self._leading = False
                self._gauge.set(0)
                self._log.error("leader lease lost", renew_deadline=self.config.renew_deadline)
                return

    async def release(self) -> None:
        """Give the lease up (empty holder, 1 s duration) so a successor need not wait for expiry."""
        if not self._leading or self._lease is None:
            return
        lease = dict(self._lease)
        lease["spec"] = dict(
            self._record(lease),
            holderIdentity="",
            leaseDurationSeconds=1,
            renewTime=micro_time(self.clock.now()),
        )
        try:
            await self.client.replace(LEASES, lease)
        except Exception as e:  # the successor then waits for expiry instead; nothing else to do
            self._log.warning("could not release the lease", error=_describe(e))
        self._leading = False
        self._gauge.set(0)

    async def run(self, on_started: Callable[[], None], on_stopped: Callable[[], None]) -> None:
        """Acquire, call ``on_started``, renew until lost, call ``on_stopped``. Cancel to stop.

        Should anything escape (a bug), leadership is given up in our own books before it propagates, so the
        caller never sees ``is_leader`` true from an elector that no longer renews."""
        try:
            await self.acquire()
            on_started()
            await self.renew_until_lost()
            on_stopped()
        except asyncio.CancelledError:
            if self.config.release_on_cancel:
                await asyncio.shield(self.release())
            raise
        except BaseException:
            self._leading = False
            self._gauge.set(0)
            raise
