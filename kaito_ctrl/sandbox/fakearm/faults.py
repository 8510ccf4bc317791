"""Faults the fake ARM server can be told to inject, with the error bodies Azure really sends.

Two families: HTTP faults answer a request with an error right away (429 with Retry-After, 5xx, any ARM
error), operation faults let a PUT/DELETE be accepted and then fail its long-running operation (quota,
SKU not available, allocation failures), which is how AKS reports capacity problems, or make it slow.
Each fault can be limited to a number of hits, to one pool, and to one kind of request.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    QUOTA = "quota"
    SKU_NOT_AVAILABLE = "sku_not_available"
    ALLOCATION_FAILED = "allocation_failed"
    ZONAL_ALLOCATION_FAILED = "zonal_allocation_failed"
    OPERATION_FAILED = "operation_failed"
    SLOW = "slow"
    THROTTLE = "throttle"
    SERVER_ERROR = "server_error"
    ERROR = "error"
    # Refusals AKS gives synchronously, in its own words (HTTP faults: the PUT itself fails).
    PRECONDITION_SKU = "precondition_sku"
    PRECONDITION_QUOTA = "precondition_quota"
    VM_SIZE_NOT_SUPPORTED = "vm_size_not_supported"
    NOT_SUPPORTED_FOR_SUBSCRIPTION = "not_supported_for_subscription"
    RESTRICTED_BY_AKS = "restricted_by_aks"
    POLICY = "policy"


SYNC_REFUSALS = frozenset(
    {
        FaultKind.PRECONDITION_SKU,
        FaultKind.PRECONDITION_QUOTA,
        FaultKind.VM_SIZE_NOT_SUPPORTED,
        FaultKind.NOT_SUPPORTED_FOR_SUBSCRIPTION,
        FaultKind.RESTRICTED_BY_AKS,
        FaultKind.POLICY,
    }
)
HTTP_KINDS = frozenset({FaultKind.THROTTLE, FaultKind.SERVER_ERROR, FaultKind.ERROR}) | SYNC_REFUSALS

QUOTA_MESSAGE = (
    "Operation could not be completed as it results in exceeding approved {family} Cores quota. "
    "Additional details - Deployment Model: Resource Manager, Location: {location}, Current Limit: {limit}, "
    "Current Usage: {usage}, Additional Required: {required}, (Minimum) New Limit Required: {new_limit}. "
    "Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/"
    "UsageAndQuota.ReactView/Parameters/ by specifying parameters listed in the 'Details' section for deployment "
    "to succeed. Please read more about quota limits at "
    "https://docs.microsoft.com/en-us/azure/azure-supportability/per-vm-quota-requests"
)
SKU_MESSAGE = (
    "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {vm_size}' is "
    "currently not available in location '{location}'. Please try another size or deploy to a different location "
    "or zones. See https://aka.ms/azureskunotavailable for details."
)
ALLOCATION_MESSAGE = (
    "Allocation failed. We do not have sufficient capacity for the requested VM size in this {scope}. Read more "
    "about improving likelihood of allocation success at http://aka.ms/allocation-guidance"
)
THROTTLE_MESSAGE = (
    "The request is being throttled as the limit has been reached for operation type - {operation_type}. "
    "For more information, see - https://aka.ms/srpthrottlinglimits"
)

# AKS's preflight wraps the compute error as text inside its own 400 PreconditionFailed.
PRECONDITION_SKU_MESSAGE = (
    "Preflight validation check for resource(s) for container service {cluster} in resource group {resource_group} "
    'failed. Message: Code="SkuNotAvailable" Message="The requested VM size for resource \'Following SKUs have '
    "failed for Capacity Restrictions: {vm_size}' is currently not available in location '{location}'. Please try "
    'another size or deploy to a different location or zones. See https://aka.ms/azureskunotavailable for details."'
)
PRECONDITION_QUOTA_MESSAGE = (
    "Preflight validation check for resource(s) for container service {cluster} in resource group {resource_group} "
    'failed. Message: Code="InvalidTemplateDeployment" Message="The template deployment is not valid according '
    'to the validation procedure. See inner errors for details." Details=[{{"code":"QuotaExceeded",'
    '"message":"Operation could not be completed as it results in exceeding approved quota."}}]'
)
VM_SIZE_MESSAGE = (
    "The VM size of {vm_size} is not supported for creation. Please see https://aka.ms/aks/vm-size for supported "
    "sizes."
)
SUBSCRIPTION_MESSAGE = (
    "The VM size of AgentPoolProfile:{pool} is not allowed in your subscription in location '{location}'. The "
    "VM size {vm_size} is not supported for subscription."
)
RESTRICTED_MESSAGE = "The VM size {vm_size} is restricted by AKS and cannot be used for agent pools."
POLICY_MESSAGE = (
    'Resource \'{pool}\' was disallowed by policy. Policy identifiers: \'[{{"policyAssignment":{{"name":'
    '"Allowed virtual machine size SKUs"}}}}]\'.'
)

# kind -> (HTTP status, ARM code, message template)
_DEFAULTS: dict[FaultKind, tuple[int, str, str]] = {
    FaultKind.QUOTA: (409, "QuotaExceeded", QUOTA_MESSAGE),
    FaultKind.SKU_NOT_AVAILABLE: (409, "SkuNotAvailable", SKU_MESSAGE),
    FaultKind.ALLOCATION_FAILED: (409, "AllocationFailed", ALLOCATION_MESSAGE),
    FaultKind.ZONAL_ALLOCATION_FAILED: (409, "ZonalAllocationFailed", ALLOCATION_MESSAGE),
    FaultKind.OPERATION_FAILED: (
        500,
        "InternalOperationError",
        "An internal error occurred during {operation}.",
    ),
    FaultKind.SLOW: (200, "", ""),
    FaultKind.THROTTLE: (429, "TooManyRequests", THROTTLE_MESSAGE),
    FaultKind.SERVER_ERROR: (
        500,
        "InternalServerError",
        "An internal server error occurred. Try again later.",
    ),
    FaultKind.ERROR: (400, "BadRequest", "The request is invalid."),
    FaultKind.PRECONDITION_SKU: (400, "PreconditionFailed", PRECONDITION_SKU_MESSAGE),
    FaultKind.PRECONDITION_QUOTA: (400, "PreconditionFailed", PRECONDITION_QUOTA_MESSAGE),
    FaultKind.VM_SIZE_NOT_SUPPORTED: (400, "VMSizeNotSupported", VM_SIZE_MESSAGE),
    FaultKind.NOT_SUPPORTED_FOR_SUBSCRIPTION: (400, "BadRequest", SUBSCRIPTION_MESSAGE),
    FaultKind.RESTRICTED_BY_AKS: (400, "BadRequest", RESTRICTED_MESSAGE),
    FaultKind.POLICY: (403, "RequestDisallowedByPolicy", POLICY_MESSAGE),
}


class _Blank(dict[str, Any]):
    """Template context where a missing key renders as itself, so odd templates still render."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass
class Fault:
    """One injected fault.

    ``on`` selects what it hits: for HTTP faults a request kind (``"PUT pool"``, ``"GET pool"``, ``"GET pools"``,
    ``"DELETE pool"``, ``"GET operation"``, ``"GET skus"``, ``"GET usages"``) or ``"*"``; for operation faults
    ``"put"`` (create or update, the default), ``"create"``, ``"update"``, ``"delete"`` or ``"*"``.
    ``times`` None means until removed.
    """

    kind: FaultKind
    on: str = ""
    pool: str | None = None
    times: int | None = None
    status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: int | None = None
    duration: float | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    hits: int = 0

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        if not self.on:
            self.on = "PUT pool" if self.kind in SYNC_REFUSALS else "*" if self.is_http else "put"
        if self.kind is FaultKind.THROTTLE and self.retry_after is None:
            self.retry_after = 1
        if self.kind is FaultKind.SLOW and self.duration is None:
            raise ValueError("a slow fault needs a duration")

    @property
    def is_http(self) -> bool:
        return self.kind in HTTP_KINDS

    @property
    def http_status(self) -> int:
        return self.status or _DEFAULTS[self.kind][0]

    def error(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The ARM error object (``{"code", "message"}``) this fault answers with, rendered for ``context``."""
        _, code, template = _DEFAULTS[self.kind]
        values = _Blank(context)
        values.setdefault("scope", "zone" if self.kind is FaultKind.ZONAL_ALLOCATION_FAILED else "region")
        return {"code": self.code or code, "message": (self.message or template).format_map(values)}

    def to_json(self) -> dict[str, Any]:
        return {k: v.value if isinstance(v, StrEnum) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        known = {f.name for f in dataclasses.fields(cls)} - {"hits"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        if "kind" not in data:
            raise ValueError(f"a fault needs a kind, one of {', '.join(k.value for k in FaultKind)}")
        return cls(**{k: v for k, v in data.items() if k in known})


class FaultBook:
    """The active faults; each hit consumes one of its ``times``."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        before = len(self._faults)
        self._faults = [f for f in self._faults if f.id != fault_id]
        return len(self._faults) != before

    def clear(self) -> None:
        self._faults.clear()

    def __iter__(self) -> Any:
        return iter(list(self._faults))

    def _take(self, fault: Fault) -> Fault:
        fault.hits += 1
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
        return fault

    def _find(
        self, want_http: bool, on: str, aliases: tuple[str, ...], pool: str | None, kinds: Any
    ) -> Fault | None:
        for fault in self._faults:
            if fault.is_http != want_http or fault.kind not in kinds:
                continue
            if fault.on != "*" and fault.on != on and fault.on not in aliases:
                continue
            if fault.pool is not None and fault.pool != pool:
                continue
            return self._take(fault)
        return None

    def take_http(self, request_kind: str, pool: str | None) -> Fault | None:
        """The HTTP fault to answer this request with, if any."""
        return self._find(True, request_kind, (), pool, HTTP_KINDS)

    def take_operation(self, operation: str, pool: str) -> tuple[Fault | None, Fault | None]:
        """(failure, slowness) for an operation ("create", "update" or "delete") starting on ``pool``."""
        aliases = ("put",) if operation in ("create", "update") else ()
        failing = frozenset(FaultKind) - HTTP_KINDS - {FaultKind.SLOW}
        failure = self._find(False, operation, aliases, pool, failing)
        slow = self._find(False, operation, aliases, pool, {FaultKind.SLOW})
        return failure, slow
