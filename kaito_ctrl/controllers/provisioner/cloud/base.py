"""What the node provisioner needs from a cloud: agent pools as plain data, and errors as reasons to act on.

The provisioner only ever sees these types; ``AzureProvider`` (and any other cloud) translates to and from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Final, Literal, Protocol


class Reason(StrEnum):
    """Why a cloud call failed, in terms a user or controller can act on."""

    QUOTA_EXCEEDED = "QuotaExceeded"
    SKU_NOT_AVAILABLE = "SKUNotAvailable"
    ALLOCATION_FAILED = "AllocationFailed"
    OPERATION_NOT_ALLOWED = "OperationNotAllowed"
    # An Azure Policy assignment refused the request (RequestDisallowedByPolicy): someone must change the policy.
    POLICY_DENIED = "PolicyDenied"
    INVALID_PARAMETER = "InvalidParameter"
    AUTH_FAILED = "AuthFailed"
    THROTTLED = "Throttled"
    TRANSIENT = "Transient"
    NOT_FOUND = "NotFound"
    CONFLICT = "Conflict"
    OPERATION_IN_PROGRESS = "OperationInProgress"
    UNKNOWN = "Unknown"


# Retrying unchanged can succeed for these; the others need a change by someone (quota, size, spec, RBAC).
RETRYABLE_REASONS = frozenset(
    {
        Reason.ALLOCATION_FAILED,
        Reason.THROTTLED,
        Reason.TRANSIENT,
        Reason.CONFLICT,
        Reason.OPERATION_IN_PROGRESS,
        Reason.UNKNOWN,
    }
)
# No capacity to be had as asked: karpenter's InsufficientCapacity (the claim cannot launch as specified).
CAPACITY_REASONS = frozenset({Reason.QUOTA_EXCEEDED, Reason.SKU_NOT_AVAILABLE, Reason.ALLOCATION_FAILED})


class CloudError(Exception):
    """A failed cloud call: a stable ``reason``, the cloud's own ``code`` and ``message`` kept verbatim."""

    def __init__(
        self,
        reason: Reason,
        code: str,
        message: str,
        retry_after: float | None = None,
        retryable: bool | None = None,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(f"{reason}: {code}: {message}" if code else f"{reason}: {message}")
        self.reason = reason
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.retryable = reason in RETRYABLE_REASONS if retryable is None else retryable
        self.status = status

    @property
    def insufficient_capacity(self) -> bool:
        return self.reason in CAPACITY_REASONS

    def __repr__(self) -> str:
        return (
            f"CloudError(reason={self.reason.value!r}, code={self.code!r}, message={self.message!r}, "
            f"retry_after={self.retry_after!r}, retryable={self.retryable!r})"
        )


@dataclass(frozen=True)
class AgentPoolSpec:
    """The agent pool to create; for Kaito one GPU node per pool, the pool named after the NodeClaim."""

    name: str
    vm_size: str
    node_count: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    # ARM's form, "key=value:Effect".
    taints: tuple[str, ...] = ()
    os_disk_size_gb: int | None = None
    os_sku: str = "Ubuntu"
    # ARM tag names may not contain < > % & \ ? / (so no "kaito.sh/..." keys here).
    tags: dict[str, str] = field(default_factory=dict)
    mode: str = "User"


IN_PROGRESS_STATES = frozenset(
    {"Creating", "Updating", "Scaling", "Upgrading", "Deleting", "Starting", "Stopping"}
)


@dataclass(frozen=True)
class AgentPool:
    name: str
    vm_size: str
    provisioning_state: str
    node_count: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    power_state: str | None = None
    node_image_version: str | None = None
    os_sku: str | None = None
    os_disk_size_gb: int | None = None
    orchestrator_version: str | None = None
    mode: str | None = None
    id: str = ""
    # Set when provisioningState is Failed and the cloud said why (AKS ``status.provisioningError``).
    error: CloudError | None = field(default=None, compare=False)

    @property
    def succeeded(self) -> bool:
        return self.provisioning_state == "Succeeded"

    @property
    def failed(self) -> bool:
        return self.provisioning_state in ("Failed", "Canceled")

    @property
    def deleting(self) -> bool:
        return self.provisioning_state == "Deleting"

    @property
    def in_progress(self) -> bool:
        return self.provisioning_state in IN_PROGRESS_STATES


class _Unread(Enum):
    UNREAD = "unread"


# ``create_pool(existing=UNREAD)``: the caller has not just read the pool, the create reads it itself.
UNREAD: Final = _Unread.UNREAD
Existing = AgentPool | None | Literal[_Unread.UNREAD]


class CloudProvider(Protocol):
    """Agent pools of one cluster. Every method raises :class:`CloudError` on failure."""

    async def create_pool(
        self,
        spec: AgentPoolSpec,
        *,
        on_accepted: Callable[[], None] | None = None,
        existing: Existing = UNREAD,
    ) -> AgentPool:
        """Create the pool and wait until it is provisioned; adopt or keep waiting on one that exists.

        ``on_accepted`` is called once the cloud holds the create (its PUT answered, or a create found in
        progress): from then on a delete preempts the create, before then the PUT may still arrive after it.
        ``existing``: the pool as the caller read it just before (None: there was none), so that the create
        does not read it again; by default the create reads it first."""
        ...

    async def get_pool(self, name: str) -> AgentPool | None: ...

    async def list_pools(self) -> list[AgentPool]: ...

    async def delete_pool(self, name: str, *, ignore_pdb: bool = False) -> None:
        """Delete the pool and wait until it is gone; a pool that does not exist is already deleted.

        ``ignore_pdb``: do not drain under PodDisruptionBudgets (the Node is already gone, nothing to drain)."""
        ...

    async def check_capacity(self, vm_size: str, count: int) -> None:
        """Raise QuotaExceeded / SKUNotAvailable when ``count`` VMs of ``vm_size`` cannot be had."""
        ...

    async def close(self) -> None: ...
