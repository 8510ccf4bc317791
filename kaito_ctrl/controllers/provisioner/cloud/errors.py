"""Cloud errors as reasons a user can act on.

ARM answers with many codes, sometimes nested (`InvalidTemplateDeployment` wrapping `QuotaExceeded`), sometimes
with the quota only in the message of an `OperationNotAllowed`. ``classify`` turns an ARM error body (nested or
flat, as AKS sometimes returns it) plus the HTTP status into one :class:`CloudError` with a stable reason, the
Azure code and message kept verbatim, whether retrying can help, and any Retry-After.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

QUOTA_EXCEEDED = "QuotaExceeded"
SKU_NOT_AVAILABLE = "SKUNotAvailable"
ALLOCATION_FAILED = "AllocationFailed"
OPERATION_IN_PROGRESS = "OperationInProgress"
OPERATION_NOT_ALLOWED = "OperationNotAllowed"
INVALID_PARAMETER = "InvalidParameter"
THROTTLED = "Throttled"
TRANSIENT = "Transient"
NOT_FOUND = "NotFound"
UNKNOWN = "Unknown"

# Reasons where trying again unchanged will not help: the user must change something (quota, size, spec).
TERMINAL = frozenset({QUOTA_EXCEEDED, SKU_NOT_AVAILABLE, INVALID_PARAMETER, OPERATION_NOT_ALLOWED})

_CODES = {
    "QuotaExceeded": QUOTA_EXCEEDED,
    "OperationNotAllowedQuota": QUOTA_EXCEEDED,
    "SkuNotAvailable": SKU_NOT_AVAILABLE,
    "SKUNotAvailable": SKU_NOT_AVAILABLE,
    "NotAvailableForSubscription": SKU_NOT_AVAILABLE,
    "AllocationFailed": ALLOCATION_FAILED,
    "ZonalAllocationFailed": ALLOCATION_FAILED,
    "OverconstrainedAllocationRequest": ALLOCATION_FAILED,
    "OverconstrainedZonalAllocationRequest": ALLOCATION_FAILED,
    "InvalidParameter": INVALID_PARAMETER,
    "BadRequest": INVALID_PARAMETER,
    "AgentPoolAPIsNotSupported": INVALID_PARAMETER,
    "AgentPoolK8sVersionNotSupported": INVALID_PARAMETER,
    "NotFound": NOT_FOUND,
    "ResourceNotFound": NOT_FOUND,
    "TooManyRequests": THROTTLED,
    "Throttled": THROTTLED,
    "InternalServerError": TRANSIENT,
    "ServiceUnavailable": TRANSIENT,
    "GatewayTimeout": TRANSIENT,
}
_QUOTA_TEXT = re.compile(r"exceeding approved .* quota|quota.*exceed", re.IGNORECASE | re.DOTALL)
_IN_PROGRESS_TEXT = re.compile(r"(another|in progress).*(operation|in progress)", re.IGNORECASE | re.DOTALL)


@dataclass
class CloudError(Exception):
    reason: str
    code: str
    message: str
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.reason not in TERMINAL

    def __str__(self) -> str:
        return f"{self.reason}: {self.code}: {self.message}"


def _error_object(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        inner = body.get("error")
        return inner if isinstance(inner, dict) else body
    return {}


def _codes(error: dict[str, Any]) -> list[tuple[str, str]]:
    """The error's own (code, message) followed by its details', depth first."""
    out = [(str(error.get("code") or ""), str(error.get("message") or ""))]
    for detail in error.get("details") or []:
        if isinstance(detail, dict):
            out.extend(_codes(detail))
    return out


def classify(status: int, body: Any, retry_after: float | None = None) -> CloudError:
    error = _error_object(body)
    pairs = _codes(error)
    top_code, top_message = pairs[0]
    message = "; ".join(m for _, m in pairs if m) or top_message
    for code, _ in pairs:
        if code in _CODES and _CODES[code] not in (INVALID_PARAMETER, NOT_FOUND):
            return CloudError(_CODES[code], code, message, retry_after)
    if _QUOTA_TEXT.search(message):
        return CloudError(QUOTA_EXCEEDED, top_code or "OperationNotAllowed", message, retry_after)
    if top_code == "OperationNotAllowed" or status == 409:
        if _IN_PROGRESS_TEXT.search(message):
            return CloudError(OPERATION_IN_PROGRESS, top_code or "Conflict", message, retry_after)
        return CloudError(OPERATION_NOT_ALLOWED, top_code or "Conflict", message, retry_after)
    for code, _ in pairs:
        if code in _CODES:
            return CloudError(_CODES[code], code, message, retry_after)
    if status == 404:
        return CloudError(NOT_FOUND, top_code or "NotFound", message, retry_after)
    if status == 429:
        return CloudError(THROTTLED, top_code or "TooManyRequests", message, retry_after)
    if status >= 500:
        return CloudError(TRANSIENT, top_code or str(status), message, retry_after)
    if status == 400:
        return CloudError(INVALID_PARAMETER, top_code or "BadRequest", message, retry_after)
    return CloudError(UNKNOWN, top_code or str(status), message, retry_after)
