"""Azure SDK exceptions and ARM error JSON turned into :class:`CloudError` reasons.

ARM answers with many codes: nested (``InvalidTemplateDeployment`` wrapping ``QuotaExceeded``), flat (AKS
sometimes drops the ``{"error": ...}`` envelope), inside a failed async operation (HTTP 200, ``status: Failed``),
or with the quota only in the text of an ``OperationNotAllowed``. The cloud's code and message are kept
verbatim, because they are what a user pastes into a support ticket.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from kaito_ctrl.controllers.provisioner.cloud.base import CloudError, Reason

_CODE_REASONS: dict[str, Reason] = {
    code.lower(): reason
    for reason, codes in {
        Reason.QUOTA_EXCEEDED: ("QuotaExceeded", "InsufficientVCPUQuota"),
        Reason.SKU_NOT_AVAILABLE: ("SkuNotAvailable", "NotAvailableForSubscription", "VMSizeNotSupported"),
        Reason.POLICY_DENIED: ("RequestDisallowedByPolicy",),
        Reason.ALLOCATION_FAILED: (
            "AllocationFailed",
            "ZonalAllocationFailed",
            "OverconstrainedAllocationRequest",
            "OverconstrainedZonalAllocationRequest",
        ),
        Reason.OPERATION_IN_PROGRESS: ("AnotherOperationInProgress", "OperationInProgress"),
        Reason.CONFLICT: ("Conflict", "PreconditionFailed", "EtagMismatch"),
        Reason.AUTH_FAILED: (
            "AuthorizationFailed",
            "LinkedAuthorizationFailed",
            "AuthenticationFailed",
            "InvalidAuthenticationToken",
            "InvalidAuthenticationTokenTenant",
            "ExpiredAuthenticationToken",
        ),
        Reason.THROTTLED: ("TooManyRequests", "SubscriptionRequestsThrottled", "Throttled"),
        Reason.TRANSIENT: (
            "InternalServerError",
            "InternalOperationError",
            "ServiceUnavailable",
            "GatewayTimeout",
            "RequestTimeout",
            "Canceled",
            "OperationCanceled",
            "OperationPreempted",
            # A DELETE sent while a create ran: AKS fails the create with these (the delete goes on).
            "AKSOperationPreempted",
            "AKSOperationPreemptedByDelete",
        ),
        Reason.NOT_FOUND: ("NotFound", "ResourceNotFound"),
        # A missing cluster, resource group or subscription is a configuration error, not a missing pool.
        Reason.INVALID_PARAMETER: (
            "InvalidParameter",
            "BadRequest",
            "InvalidRequestContent",
            "InvalidRequestFormat",
            "InvalidTemplateDeployment",
            "PropertyChangeNotAllowed",
            "InvalidTagNameCharacters",
            "AgentPoolAPIsNotSupported",
            "AgentPoolK8sVersionNotSupported",
            "MissingApiVersionParameter",
            "InvalidApiVersionParameter",
            "NoRegisteredProviderFound",
            "ParentResourceNotFound",
            "ResourceGroupNotFound",
            "SubscriptionNotFound",
        ),
        Reason.OPERATION_NOT_ALLOWED: ("OperationNotAllowed",),
    }.items()
    for code in codes
}
# Codes that name the real cause; looked for first, anywhere in the error's details.
_SPECIFIC = frozenset(
    {Reason.QUOTA_EXCEEDED, Reason.SKU_NOT_AVAILABLE, Reason.ALLOCATION_FAILED, Reason.POLICY_DENIED}
)
# AKS often refuses a PUT at once with 400 PreconditionFailed (or BadRequest, InvalidTemplateDeployment) whose
# message embeds the inner error as text: 'Code="SkuNotAvailable" Message="..."' or 'Code: QuotaExceeded'.
_EMBEDDED_CODE = re.compile(
    r"\b(" + "|".join(sorted(code for code, reason in _CODE_REASONS.items() if reason in _SPECIFIC)) + r")\b",
    re.I,
)
# Size refusals AKS words without a code: "The VM size of Standard_X is not supported for subscription",
# "... is restricted by AKS", "... is not available in location 'x'", "... not allowed in your subscription".
_SKU_TEXT = re.compile(
    r"not supported for (this )?subscription|restricted by AKS|not available in (the )?(location|region|zone)"
    r"|not allowed in your subscription|vm size .*not supported|not offered in location",
    re.I,
)
_POLICY_TEXT = re.compile(r"disallowed by policy|policy definition|policy assignment", re.I)

# CRP: "Operation could not be completed as it results in exceeding approved standardNCSv3Family Cores quota."
_QUOTA_TEXT = re.compile(
    r"exceeding approved .*quota|quota .*(exceeded|insufficient)|insufficient .*quota", re.I
)
# AKS: "Another agentpool operation (x - Creating) is in progress" / "there's an in progress create node pool
# operation" / "...is in progress, please wait for it to finish".
_IN_PROGRESS_TEXT = re.compile(
    r"another .*operation .*in progress|in progress .*operation|operation .*in progress", re.I
)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    inner = body.get("error")
    return inner if isinstance(inner, dict) else body


def _walk(error: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The error's own (code, message), then its details', depth first."""
    yield str(error.get("code") or ""), str(error.get("message") or "")
    for detail in error.get("details") or ():
        if isinstance(detail, Mapping):
            yield from _walk(detail)


def _by_status(status: int | None) -> Reason:
    if status is None:
        return Reason.UNKNOWN
    if status in (401, 403):
        return Reason.AUTH_FAILED
    if status == 404:
        return Reason.NOT_FOUND
    if status in (409, 412):
        return Reason.CONFLICT
    if status == 429:
        return Reason.THROTTLED
    if status == 408 or status >= 500:
        return Reason.TRANSIENT
    if status == 400:
        return Reason.INVALID_PARAMETER
    return Reason.UNKNOWN


def classify_arm_error(
    status: int | None, body: Any, headers: Mapping[str, str] | None = None, *, fallback_message: str = ""
) -> CloudError:
    """Classify one ARM error answer; ``status`` 200 is a failed async operation's status resource."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    error_status = status if status is not None and status >= 400 else None
    pairs = list(_walk(_error_object(body))) or [("", "")]
    if not pairs[0][0] and headers.get("x-ms-error-code"):
        pairs[0] = (headers["x-ms-error-code"], pairs[0][1])
    top_code, top_message = pairs[0]
    # Retry-After on a 2xx poll is a polling hint, not advice about this failure.
    retry_after = retry_after_seconds(headers.get("retry-after")) if error_status else None

    def make(reason: Reason, code: str, message: str) -> CloudError:
        return CloudError(
            reason,
            code or top_code or (str(error_status) if error_status else ""),
            message or top_message or fallback_message or f"HTTP {status}",
            retry_after=retry_after,
            status=error_status,
        )

    for code, message in pairs:
        reason = _CODE_REASONS.get(code.lower())
        if reason in _SPECIFIC:
            return make(reason, code, message)
    for code, message in pairs:
        embedded = _EMBEDDED_CODE.search(message)
        if embedded:
            return make(_CODE_REASONS[embedded.group(1).lower()], code, message)
    for code, message in pairs:
        if _QUOTA_TEXT.search(message):
            return make(Reason.QUOTA_EXCEEDED, code, message)
    for code, message in pairs:
        if _SKU_TEXT.search(message):
            return make(Reason.SKU_NOT_AVAILABLE, code, message)
        if _POLICY_TEXT.search(message):
            return make(Reason.POLICY_DENIED, code, message)
    conflictish = top_code.lower() in ("operationnotallowed", "conflict") or error_status == 409
    if conflictish and _IN_PROGRESS_TEXT.search(top_message):
        return make(Reason.OPERATION_IN_PROGRESS, top_code, top_message)
    for code, message in pairs:
        reason = _CODE_REASONS.get(code.lower())
        if reason is not None:
            return make(reason, code, message)
    return make(_by_status(error_status), top_code, top_message)


def _response_body(exc: HttpResponseError) -> Any:
    response = exc.response
    if response is not None:
        try:
            raw = response.text()
        except Exception:  # the body may be unread or already streamed away
            raw = ""
        if raw:
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                return {"message": raw[:1000]}
    odata = exc.error
    if odata is None:
        return None
    return {
        "code": odata.code,
        "message": odata.message,
        "details": [{"code": d.code, "message": d.message} for d in (odata.details or [])],
    }


def classify_exception(exc: BaseException) -> CloudError:
    """Classify anything the Azure SDK (or the network under it) raises."""
    if isinstance(exc, CloudError):
        return exc
    if isinstance(exc, ClientAuthenticationError) and exc.response is None:
        # The credential could not get a token: no HTTP answer to read.
        return CloudError(Reason.AUTH_FAILED, "CredentialUnavailable", str(exc.message or exc))
    if isinstance(exc, HttpResponseError):
        headers = dict(getattr(exc.response, "headers", None) or {})
        return classify_arm_error(
            exc.status_code, _response_body(exc), headers, fallback_message=str(exc.message or "")
        )
    if isinstance(exc, ServiceRequestError | ServiceResponseError | asyncio.TimeoutError | ConnectionError):
        return CloudError(Reason.TRANSIENT, type(exc).__name__, str(exc) or type(exc).__name__)
    if isinstance(exc, AzureError):
        return CloudError(Reason.UNKNOWN, type(exc).__name__, str(exc.message or exc))
    return CloudError(Reason.UNKNOWN, type(exc).__name__, str(exc))
