"""The fake ARM server's world: one AKS cluster's agent pools, their long-running operations, quota and SKUs.

Operations finish by the clock: ``tick`` settles every operation whose time has come (the server calls it
before each request and a few times a second). Pools, operations and their times are wall-clock based and
saved to a JSON file, so a restarted fake finds its pools and their operations where they were.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog

from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.sandbox.fakearm.catalog import VmSize, vm_size, vm_sizes
from kaito_ctrl.sandbox.fakearm.faults import QUOTA_MESSAGE, SKU_MESSAGE, FaultBook

log = structlog.get_logger(__name__)

POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
TAINT = re.compile(r"^[^=:\s]+=[^:\s]*:(NoSchedule|PreferNoSchedule|NoExecute)$")
TAG_RESERVED = re.compile(r"[<>%&\\?/]")
OS_SKUS = frozenset(
    {"Ubuntu", "AzureLinux", "CBLMariner", "Ubuntu2204", "Ubuntu2404", "Windows2019", "Windows2022"}
)
BUSY_STATES = {"create": "Creating", "update": "Updating", "delete": "Deleting"}
# Kept by ARM, not taken from a PUT body.
READ_ONLY = frozenset(
    {"provisioningState", "powerState", "nodeImageVersion", "currentOrchestratorVersion", "status"}
)


class ArmError(Exception):
    """An ARM error answer: HTTP status and the ``{"error": {"code", "message"}}`` body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class FakeArmConfig:
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "kaito-rg"
    cluster_name: str = "kaito-aks"
    location: str = "eastus"
    node_resource_group: str = ""
    orchestrator_version: str = "1.30.6"
    create_seconds: float = 2.0
    update_seconds: float = 1.0
    delete_seconds: float = 1.0
    # Sent with every accepted PUT/DELETE and operation poll; whole seconds as ARM sends them (0 = none).
    retry_after: int = 1
    page_size: int = 100
    # Old AKS refused any agent pool operation while another pool's was running.
    cluster_lock: bool = False
    # The bearer token clients must send; None accepts any bearer token.
    token: str | None = None
    quota: dict[str, int] = field(default_factory=dict)
    default_family_limit: int = 1000
    regional_limit: int = 10000
    restricted_skus: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.node_resource_group:
            self.node_resource_group = f"MC_{self.resource_group}_{self.cluster_name}_{self.location}"
        self.restricted_skus = {s.lower() for s in self.restricted_skus}

    def update(self, values: Mapping[str, Any]) -> None:
        names = {f for f in asdict(self)}
        for key, value in values.items():
            if key not in names:
                raise ValueError(f"unknown config field {key!r}")
            setattr(self, key, {s.lower() for s in value} if key == "restricted_skus" else value)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["restricted_skus"] = sorted(self.restricted_skus)
        out["token"] = "[set]" if self.token else None
        return out


@dataclass
class Operation:
    id: str
    pool: str
    kind: str  # create | update | delete
    started: float
    done_at: float
    status: str = "InProgress"  # InProgress | Succeeded | Failed
    ended: float | None = None
    error: dict[str, Any] | None = None
    error_status: int = 409


@dataclass
class PoolRecord:
    name: str
    spec: dict[str, Any]  # properties as the client sent them, read-only ones dropped
    state: str
    created: float
    operation: str | None = None
    succeeded_at: float | None = None
    error: dict[str, Any] | None = None


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def _image_version(os_sku: str) -> str:
    if os_sku in ("AzureLinux", "CBLMariner"):
        return "AKSAzureLinux-V2gen2-202501.12.0"
    return "AKSUbuntu-2204gen2containerd-202501.12.0"


class FakeArmState:
    def __init__(
        self,
        config: FakeArmConfig | None = None,
        *,
        clock: Clock = REAL_CLOCK,
        path: Path | None = None,
        faults: FaultBook | None = None,
    ) -> None:
        self.config = config or FakeArmConfig()
        self.clock = clock
        self.path = path
        self.faults = faults or FaultBook()
        self.pools: dict[str, PoolRecord] = {}
        self.operations: dict[str, Operation] = {}
        self._listeners: list[Callable[[], None]] = []
        if path is not None and path.exists():
            self._load(path)

    # ------------------------------------------------------------------ persistence and change notification
    def _load(self, path: Path) -> None:
        data = orjson.loads(path.read_bytes())
        self.pools = {name: PoolRecord(**rec) for name, rec in (data.get("pools") or {}).items()}
        self.operations = {op_id: Operation(**op) for op_id, op in (data.get("operations") or {}).items()}
        log.info("fake ARM state loaded", path=str(path), pools=len(self.pools))

    def _save(self) -> None:
        if self.path is None:
            return
        data = {
            "pools": {n: asdict(p) for n, p in self.pools.items()},
            "operations": {i: asdict(o) for i, o in self.operations.items()},
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.path)

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        self._save()
        for listener in self._listeners:
            listener()

    # ------------------------------------------------------------------ time
    def tick(self) -> None:
        """Settle every operation whose time has come."""
        now = self.clock.now()
        settled = False
        for op in self.operations.values():
            if op.status == "InProgress" and op.done_at <= now:
                self._settle(op, now)
                settled = True
        # Forget finished operations after an hour, as ARM does.
        stale = [i for i, o in self.operations.items() if o.ended is not None and now - o.ended > 3600]
        for op_id in stale:
            del self.operations[op_id]
        if settled or stale:
            self._changed()

    def _settle(self, op: Operation, now: float) -> None:
        op.status, op.ended = ("Failed" if op.error else "Succeeded"), now
        pool = self.pools.get(op.pool)
        if pool is None or pool.operation != op.id:
            return
        pool.operation = None
        if op.error:
            pool.state, pool.error = "Failed", op.error
        elif op.kind == "delete":
            del self.pools[op.pool]
        else:
            pool.state, pool.error, pool.succeeded_at = "Succeeded", None, now
        log.info("fake ARM operation finished", pool=op.pool, kind=op.kind, status=op.status)

    # ------------------------------------------------------------------ views
    def resource_id(self, name: str) -> str:
        c = self.config
        return (
            f"/subscriptions/{c.subscription_id}/resourcegroups/{c.resource_group}/providers/"
            f"Microsoft.ContainerService/managedClusters/{c.cluster_name}/agentPools/{name}"
        )

    def resource(self, pool: PoolRecord) -> dict[str, Any]:
        c, spec = self.config, pool.spec
        os_sku = str(spec.get("osSKU") or "Ubuntu")
        props: dict[str, Any] = {
            "count": 1,
            "osDiskSizeGB": 128,
            "osDiskType": "Managed",
            "kubeletDiskType": "OS",
            "maxPods": 110,
            "type": "VirtualMachineScaleSets",
            "enableAutoScaling": False,
            "scaleDownMode": "Delete",
            "orchestratorVersion": c.orchestrator_version,
            "enableNodePublicIP": False,
            "enableEncryptionAtHost": False,
            "enableUltraSSD": False,
            "enableFIPS": False,
            "mode": "User",
            "osType": "Linux",
            "upgradeSettings": {"maxSurge": "10%"},
            "nodeLabels": {},
            "nodeTaints": [],
            **spec,
            "osSKU": os_sku,
            "provisioningState": pool.state,
            "powerState": {"code": "Running"},
            "currentOrchestratorVersion": spec.get("orchestratorVersion") or c.orchestrator_version,
            "nodeImageVersion": _image_version(os_sku),
        }
        if pool.state == "Failed" and pool.error:
            props["status"] = {"provisioningError": pool.error}
        return {
            "id": self.resource_id(pool.name),
            "name": pool.name,
            "type": "Microsoft.ContainerService/managedClusters/agentPools",
            "properties": props,
        }

    def operation_status(self, op: Operation) -> dict[str, Any]:
        c = self.config
        body: dict[str, Any] = {
            "id": f"/subscriptions/{c.subscription_id}/providers/Microsoft.ContainerService/locations/"
            f"{c.location}/operations/{op.id}",
            "name": op.id,
            "status": op.status,
            "startTime": iso(op.started),
        }
        if op.ended is not None:
            body["endTime"] = iso(op.ended)
        if op.error:
            body["error"] = op.error
        return body

    def list_pools(self) -> list[PoolRecord]:
        return [self.pools[n] for n in sorted(self.pools)]

    # ------------------------------------------------------------------ quota and SKUs
    def _limit(self, family: str) -> int:
        return self.config.quota.get(family, self.config.default_family_limit)

    def usage(self, exclude: str | None = None) -> dict[str, int]:
        """vCPUs in use per quota family and in total ("cores"); failed pools hold no VMs."""
        out: dict[str, int] = {"cores": 0}
        for pool in self.pools.values():
            size = vm_size(str(pool.spec.get("vmSize", "")))
            if pool.name == exclude or pool.state == "Failed" or size is None:
                continue
            used = size.vcpus * int(pool.spec.get("count", 1))
            out[size.family] = out.get(size.family, 0) + used
            out["cores"] += used
        return out

    def usages(self) -> list[dict[str, Any]]:
        used = self.usage()
        families = sorted({s.family for s in vm_sizes().values()} | set(self.config.quota))
        rows = [
            {
                "unit": "Count",
                "currentValue": used.get(family, 0),
                "limit": self._limit(family),
                "name": {"value": family, "localizedValue": f"{family} vCPUs"},
            }
            for family in families
        ]
        rows.append(
            {
                "unit": "Count",
                "currentValue": used["cores"],
                "limit": self.config.regional_limit,
                "name": {"value": "cores", "localizedValue": "Total Regional vCPUs"},
            }
        )
        return rows

    def skus(self, location: str | None) -> list[dict[str, Any]]:
        loc = self.config.location
        if location is not None and location.lower() != loc.lower():
            return []
        out = [self._sku(size, loc) for size in vm_sizes().values()]
        out.append(
            {
                "resourceType": "disks",
                "name": "Premium_LRS",
                "tier": "Premium",
                "size": "P1",
                "locations": [loc],
            }
        )
        return out

    def _sku(self, size: VmSize, loc: str) -> dict[str, Any]:
        caps = [
            ("vCPUs", size.vcpus),
            ("vCPUsAvailable", size.vcpus),
            ("MemoryGB", size.memory_gib),
            ("HyperVGenerations", "V1,V2"),
            ("MaxDataDiskCount", 32),
        ]
        if size.gpus:
            caps.append(("GPUs", size.gpus))
        restrictions = []
        if size.name.lower() in self.config.restricted_skus:
            restrictions.append(
                {
                    "type": "Location",
                    "values": [loc],
                    "restrictionInfo": {"locations": [loc]},
                    "reasonCode": "NotAvailableForSubscription",
                }
            )
        return {
            "resourceType": "virtualMachines",
            "name": size.name,
            "tier": "Standard",
            "size": size.tier_size,
            "family": size.family,
            "locations": [loc],
            "locationInfo": [{"location": loc, "zones": ["1", "2", "3"], "zoneDetails": []}],
            "capabilities": [{"name": n, "value": str(v)} for n, v in caps],
            "restrictions": restrictions,
        }

    # ------------------------------------------------------------------ validation
    def _validate(self, name: str, props: Mapping[str, Any], existing: PoolRecord | None) -> None:
        if not POOL_NAME.fullmatch(name):
            raise ArmError(
                400,
                "InvalidParameter",
                f"The value of parameter agentPoolName '{name}' is invalid: agent pool names must start with a "
                "lowercase letter, contain only lowercase letters and numbers, and be 1-12 characters long.",
            )
        vm = props.get("vmSize")
        if existing is not None and vm and str(vm).lower() != str(existing.spec.get("vmSize", "")).lower():
            raise ArmError(400, "PropertyChangeNotAllowed", "Changing property 'vmSize' is not allowed.")
        if existing is None and not vm:
            raise ArmError(400, "InvalidParameter", "Required parameter 'vmSize' is missing (null).")
        if vm and vm_size(str(vm)) is None:
            raise ArmError(
                400,
                "InvalidParameter",
                f"The value {vm} of parameter vmSize is not a VM size offered in location '{self.config.location}'.",
            )
        count = props.get("count", 1)
        if not isinstance(count, int) or not 0 <= count <= 1000:
            raise ArmError(
                400, "InvalidParameter", f"The value {count} of parameter count must be between 0 and 1000."
            )
        disk = props.get("osDiskSizeGB")
        if disk not in (None, 0) and (not isinstance(disk, int) or not 30 <= disk <= 2048):
            raise ArmError(
                400,
                "InvalidParameter",
                f"The value {disk} of parameter osDiskSizeGB must be between 30 and 2048.",
            )
        os_sku = props.get("osSKU")
        if os_sku is not None and os_sku not in OS_SKUS:
            raise ArmError(
                400, "InvalidParameter", f"The value {os_sku} of parameter osSKU is not supported."
            )
        mode = props.get("mode", "User")
        if mode not in ("System", "User"):
            raise ArmError(
                400, "InvalidParameter", f"The value {mode} of parameter mode must be System or User."
            )
        for taint in props.get("nodeTaints") or ():
            if not isinstance(taint, str) or not TAINT.fullmatch(taint):
                raise ArmError(
                    400,
                    "InvalidParameter",
                    f"Taint '{taint}' is invalid: taints must look like key=value:Effect with effect NoSchedule, "
                    "PreferNoSchedule or NoExecute.",
                )
        bad_tags = [k for k in (props.get("tags") or {}) if TAG_RESERVED.search(k)]
        if bad_tags:
            raise ArmError(
                400,
                "InvalidTagNameCharacters",
                f"The tag names '{', '.join(bad_tags)}' have reserved characters '<,>,%,&,\\,?,/' or control "
                "characters.",
            )

    def _refuse_if_busy(self, name: str) -> None:
        pool = self.pools.get(name)
        if pool is not None and pool.operation is not None:
            op = self.operations[pool.operation]
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Operation is not allowed because there's an in progress {op.kind} node pool operation with Id "
                f"'{op.id}' started at {iso(op.started)}. Please wait for it to finish before starting a new "
                "operation.",
            )
        if self.config.cluster_lock:
            for other in self.pools.values():
                if other.name != name and other.operation is not None:
                    raise ArmError(
                        409,
                        "OperationNotAllowed",
                        f"Operation is not allowed: Another agentpool operation ({other.name} - {other.state}) is "
                        "in progress, please wait for it to finish before starting a new operation.",
                    )

    def _provisioning_error(
        self, pool: PoolRecord, kind: str
    ) -> tuple[dict[str, Any] | None, float | None, int]:
        """What the operation will end with: an injected fault, a restricted SKU, or exhausted quota."""
        c = self.config
        size = vm_size(str(pool.spec.get("vmSize", "")))
        count = int(pool.spec.get("count", 1))
        required = size.vcpus * count if size else 0
        used = self.usage(exclude=pool.name)
        family = size.family if size else ""
        context = {
            "vm_size": size.name if size else pool.spec.get("vmSize"),
            "location": c.location,
            "family": family,
            "pool": pool.name,
            "operation": f"{kind} of agent pool {pool.name}",
            "limit": self._limit(family),
            "usage": used.get(family, 0),
            "required": required,
            "new_limit": used.get(family, 0) + required,
        }
        failure, slow = self.faults.take_operation(kind, pool.name)
        duration = slow.duration if slow else None
        if failure is not None:
            return failure.error(context), duration, failure.http_status
        if kind == "delete" or size is None:
            return None, duration, 409
        if size.name.lower() in c.restricted_skus:
            return {"code": "SkuNotAvailable", "message": SKU_MESSAGE.format_map(context)}, duration, 409
        for quota, limit in ((family, self._limit(family)), ("cores", c.regional_limit)):
            if used.get(quota, 0) + required > limit:
                context.update(family=quota, limit=limit, usage=used.get(quota, 0))
                context["new_limit"] = used.get(quota, 0) + required
                return {"code": "QuotaExceeded", "message": QUOTA_MESSAGE.format_map(context)}, duration, 409
        return None, duration, 409

    # ------------------------------------------------------------------ mutations
    def _start(self, pool: PoolRecord, kind: str) -> Operation:
        c = self.config
        error, duration, error_status = self._provisioning_error(pool, kind)
        if duration is None:
            duration = {"create": c.create_seconds, "update": c.update_seconds, "delete": c.delete_seconds}[
                kind
            ]
        now = self.clock.now()
        op = Operation(
            str(uuid.uuid4()), pool.name, kind, now, now + duration, error=error, error_status=error_status
        )
        self.operations[op.id] = op
        pool.operation, pool.state = op.id, BUSY_STATES[kind]
        return op

    def put_pool(self, name: str, body: Any) -> tuple[int, PoolRecord, Operation]:
        """Create or update a pool; (HTTP status, pool, its new operation)."""
        if not isinstance(body, Mapping) or not isinstance(body.get("properties", {}), Mapping):
            raise ArmError(
                400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
            )
        props = {k: v for k, v in (body.get("properties") or {}).items() if k not in READ_ONLY}
        existing = self.pools.get(name)
        self._validate(name, props, existing)
        self._refuse_if_busy(name)
        if existing is None:
            pool = PoolRecord(name, props, "Creating", self.clock.now())
            self.pools[name] = pool
            op = self._start(pool, "create")
            status = 201
        else:
            pool = existing
            pool.spec = {**pool.spec, **props}
            op = self._start(pool, "update")
            status = 200
        self._changed()
        return status, pool, op

    def delete_pool(self, name: str) -> Operation | None:
        """Start deleting; None when there was nothing to delete."""
        pool = self.pools.get(name)
        if pool is None:
            return None
        if pool.operation is not None:
            op = self.operations[pool.operation]
            if op.kind == "delete":
                return op  # deleting again is deleting
            # AKS accepts a DELETE while the pool is being created or updated: the running operation ends
            # Failed with AKSOperationPreemptedByDelete and the delete goes ahead.
            now = self.clock.now()
            op.status, op.ended = "Failed", now
            op.error = {
                "code": "AKSOperationPreemptedByDelete",
                "message": f"Operation {op.kind} of agent pool {name} was preempted by a delete operation "
                f"with operation Id started at {iso(now)}.",
            }
            log.info("fake ARM operation preempted by delete", pool=name, kind=op.kind)
        op = self._start(pool, "delete")
        self._changed()
        return op

    def remove_all(self, names: Iterable[str] | None = None) -> None:
        """Admin: drop pools outright, without operations."""
        for name in list(names if names is not None else self.pools):
            self.pools.pop(name, None)
        self._changed()
