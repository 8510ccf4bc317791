"""ARM error answers (nested, flat, failed async operations) classified into reasons users act on."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from kaito_ctrl.controllers.provisioner.cloud.azure_errors import (
    classify_arm_error,
    classify_exception,
    retry_after_seconds,
)
from kaito_ctrl.controllers.provisioner.cloud.base import CloudError, Reason

QUOTA_TEXT = (
    "Operation could not be completed as it results in exceeding approved standardNCSv3Family Cores quota. "
    "Additional details - Deployment Model: Resource Manager, Location: eastus, Current Limit: 6, Current Usage: 6, "
    "Additional Required: 12, (Minimum) New Limit Required: 18."
)


def err(code: str, message: str = "m", **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


# (case, HTTP status, body, reason, code kept, retryable)
CASES: list[tuple[str, int, Any, Reason, str, bool]] = [
    ("QuotaExceeded", 409, err("QuotaExceeded", QUOTA_TEXT), Reason.QUOTA_EXCEEDED, "QuotaExceeded", False),
    ("InsufficientVCPUQuota", 400, err("InsufficientVCPUQuota"), Reason.QUOTA_EXCEEDED, "InsufficientVCPUQuota", False),
    ("CRP quota text in OperationNotAllowed", 409, err("OperationNotAllowed", QUOTA_TEXT), Reason.QUOTA_EXCEEDED,
     "OperationNotAllowed", False),
    ("quota nested under InvalidTemplateDeployment", 400,
     err("InvalidTemplateDeployment", "The template deployment failed.",
         details=[{"code": "QuotaExceeded", "message": "Preflight validation failed: quota"}]),
     Reason.QUOTA_EXCEEDED, "QuotaExceeded", False),
    ("SkuNotAvailable", 409, err("SkuNotAvailable"), Reason.SKU_NOT_AVAILABLE, "SkuNotAvailable", False),
    ("SKUNotAvailable any case", 400, err("SKUNOTAVAILABLE"), Reason.SKU_NOT_AVAILABLE, "SKUNOTAVAILABLE", False),
    ("NotAvailableForSubscription", 400, err("NotAvailableForSubscription"), Reason.SKU_NOT_AVAILABLE,
     "NotAvailableForSubscription", False),
    ("AllocationFailed", 409, err("AllocationFailed"), Reason.ALLOCATION_FAILED, "AllocationFailed", True),
    ("ZonalAllocationFailed", 409, err("ZonalAllocationFailed"), Reason.ALLOCATION_FAILED, "ZonalAllocationFailed",
     True),
    ("OverconstrainedAllocationRequest", 409, err("OverconstrainedAllocationRequest"), Reason.ALLOCATION_FAILED,
     "OverconstrainedAllocationRequest", True),
    ("OverconstrainedZonalAllocationRequest", 409, err("OverconstrainedZonalAllocationRequest"),
     Reason.ALLOCATION_FAILED, "OverconstrainedZonalAllocationRequest", True),
    ("allocation inside a failed operation (HTTP 200)", 200,
     {"status": "Failed", "error": {"code": "AllocationFailed", "message": "no capacity"}},
     Reason.ALLOCATION_FAILED, "AllocationFailed", True),
    ("AKS in-progress create", 409,
     err("OperationNotAllowed", "Operation is not allowed because there's an in progress create node pool "
         "operation with Id 'x' started at 2025-01-01. Please wait for it to finish."),
     Reason.OPERATION_IN_PROGRESS, "OperationNotAllowed", True),
    ("old AKS cluster-wide lock", 409,
     err("OperationNotAllowed", "Operation is not allowed: Another agentpool operation (nodepool1 - Creating) is "
         "in progress, please wait for it to finish before starting a new operation."),
     Reason.OPERATION_IN_PROGRESS, "OperationNotAllowed", True),
    ("other OperationNotAllowed", 409, err("OperationNotAllowed", "The cluster is stopped."),
     Reason.OPERATION_NOT_ALLOWED, "OperationNotAllowed", False),
    ("InvalidParameter", 400, err("InvalidParameter"), Reason.INVALID_PARAMETER, "InvalidParameter", False),
    ("flat BadRequest as AKS sends it", 400,
     {"code": "BadRequest", "details": None, "message": "vmSize is invalid", "subcode": ""},
     Reason.INVALID_PARAMETER, "BadRequest", False),
    ("PropertyChangeNotAllowed", 400, err("PropertyChangeNotAllowed"), Reason.INVALID_PARAMETER,
     "PropertyChangeNotAllowed", False),
    ("InvalidTagNameCharacters", 400, err("InvalidTagNameCharacters"), Reason.INVALID_PARAMETER,
     "InvalidTagNameCharacters", False),
    ("AgentPoolK8sVersionNotSupported", 400, err("AgentPoolK8sVersionNotSupported"), Reason.INVALID_PARAMETER,
     "AgentPoolK8sVersionNotSupported", False),
    ("a missing cluster is configuration, not a missing pool", 404, err("ParentResourceNotFound"),
     Reason.INVALID_PARAMETER, "ParentResourceNotFound", False),
    ("ResourceGroupNotFound", 404, err("ResourceGroupNotFound"), Reason.INVALID_PARAMETER, "ResourceGroupNotFound",
     False),
    ("NotFound", 404, err("NotFound", "Agent Pool not found"), Reason.NOT_FOUND, "NotFound", False),
    ("ResourceNotFound", 404, err("ResourceNotFound"), Reason.NOT_FOUND, "ResourceNotFound", False),
    ("TooManyRequests", 429, err("TooManyRequests"), Reason.THROTTLED, "TooManyRequests", True),
    ("SubscriptionRequestsThrottled", 429, err("SubscriptionRequestsThrottled"), Reason.THROTTLED,
     "SubscriptionRequestsThrottled", True),
    ("InternalServerError", 500, err("InternalServerError"), Reason.TRANSIENT, "InternalServerError", True),
    ("ServiceUnavailable", 503, err("ServiceUnavailable"), Reason.TRANSIENT, "ServiceUnavailable", True),
    ("GatewayTimeout", 504, err("GatewayTimeout"), Reason.TRANSIENT, "GatewayTimeout", True),
    ("failed operation with an internal error", 200,
     {"status": "Failed", "error": {"code": "InternalOperationError", "message": "boom"}},
     Reason.TRANSIENT, "InternalOperationError", True),
    ("Canceled operation", 200, {"status": "Canceled", "error": {"code": "Canceled", "message": "preempted"}},
     Reason.TRANSIENT, "Canceled", True),
    ("AuthorizationFailed", 403, err("AuthorizationFailed"), Reason.AUTH_FAILED, "AuthorizationFailed", False),
    ("InvalidAuthenticationToken", 401, err("InvalidAuthenticationToken"), Reason.AUTH_FAILED,
     "InvalidAuthenticationToken", False),
    ("Conflict", 409, err("Conflict"), Reason.CONFLICT, "Conflict", True),
    ("empty 500", 500, None, Reason.TRANSIENT, "500", True),
    ("unknown 404 code", 404, err("SomethingElse"), Reason.NOT_FOUND, "SomethingElse", False),
    ("unknown 409 code", 409, err("SomethingElse"), Reason.CONFLICT, "SomethingElse", True),
    ("unknown 400 code", 400, err("SomethingElse"), Reason.INVALID_PARAMETER, "SomethingElse", False),
    ("unknown code and status", 418, err("Teapot"), Reason.UNKNOWN, "Teapot", True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "status", "body", "reason", "code", "retryable"), CASES, ids=[c[0] for c in CASES]
)
def test_classification_table(
    case: str, status: int, body: Any, reason: Reason, code: str, retryable: bool
) -> None:
    e = classify_arm_error(status, body)
    assert (e.reason, e.code, e.retryable) == (reason, code, retryable)
    if body:
        inner = body.get("error", body)
        # The deepest matching message is kept verbatim for the condition a user reads.
        messages = [inner["message"], *[d["message"] for d in inner.get("details") or []]]
        assert e.message in messages
    assert e.status == (status if status >= 400 else None)


def test_quota_keeps_the_numbers_a_user_needs() -> None:
    e = classify_arm_error(409, err("OperationNotAllowed", QUOTA_TEXT))
    assert "standardNCSv3Family" in str(e) and "Current Limit: 6" in str(e) and e.insufficient_capacity


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_header_is_honoured(status: int) -> None:
    e = classify_arm_error(
        status, err("TooManyRequests" if status == 429 else "ServiceUnavailable"), {"Retry-After": "17"}
    )
    assert e.retry_after == 17.0 and e.retryable


def test_retry_after_header_name_is_case_insensitive_and_may_be_a_date() -> None:
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert retry_after_seconds(date, now=1_000_000.0) == pytest.approx(30.0)
    assert classify_arm_error(429, err("TooManyRequests"), {"retry-after": "3"}).retry_after == 3.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_retry_after_of_a_successful_poll_is_not_advice_about_the_failure() -> None:
    body = {"status": "Failed", "error": {"code": "AllocationFailed", "message": "x"}}
    assert classify_arm_error(200, body, {"Retry-After": "5"}).retry_after is None


def test_error_code_header_fills_in_for_a_body_without_one() -> None:
    e = classify_arm_error(409, None, {"x-ms-error-code": "OperationNotAllowed"})
    assert e.code == "OperationNotAllowed" and e.reason is Reason.OPERATION_NOT_ALLOWED


class _Response:
    """Just enough of an azure-core HTTP response for HttpResponseError."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.reason = "reason"
        self.headers = headers or {}
        self._body = body
        self.content_type = "application/json"
        self.request = "GET https://management.azure.com/..."

    def text(self, encoding: str | None = None) -> str:
        return self._body.decode()

    def body(self) -> bytes:
        return self._body


def stub(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return _Response(status, body, headers)


def test_sdk_http_errors_are_read_from_the_raw_body() -> None:
    body = b'{"error":{"code":"InvalidTemplateDeployment","message":"t","details":[{"code":"QuotaExceeded","message":"q"}]}}'
    e = classify_exception(HttpResponseError(response=stub(400, body)))
    assert (e.reason, e.code, e.message) == (Reason.QUOTA_EXCEEDED, "QuotaExceeded", "q")
    throttled = HttpResponseError(
        response=stub(429, b'{"error":{"code":"TooManyRequests","message":"slow"}}', {"Retry-After": "9"})
    )
    assert classify_exception(throttled).retry_after == 9.0
    missing = ResourceNotFoundError(response=stub(404, b'{"error":{"code":"NotFound","message":"gone"}}'))
    assert classify_exception(missing).reason is Reason.NOT_FOUND


def test_non_json_body_keeps_its_text() -> None:
    e = classify_exception(HttpResponseError(response=stub(502, b"<html>Bad Gateway</html>")))
    assert e.reason is Reason.TRANSIENT and "Bad Gateway" in e.message


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ServiceRequestError("connection refused"), Reason.TRANSIENT),
        (TimeoutError(), Reason.TRANSIENT),
        (ConnectionResetError("reset"), Reason.TRANSIENT),
        (ClientAuthenticationError("no token from the metadata endpoint"), Reason.AUTH_FAILED),
        (RuntimeError("bug"), Reason.UNKNOWN),
    ],
)
def test_failures_without_an_arm_answer(exc: BaseException, reason: Reason) -> None:
    assert classify_exception(exc).reason is reason


def test_a_cloud_error_passes_through_unchanged() -> None:
    e = CloudError(Reason.CONFLICT, "X", "y", retryable=False)
    assert classify_exception(e) is e and not e.retryable


def test_capacity_reasons_are_insufficient_capacity() -> None:
    flags = {r: CloudError(r, "c", "m").insufficient_capacity for r in Reason}
    assert {r for r, f in flags.items() if f} == {
        Reason.QUOTA_EXCEEDED,
        Reason.SKU_NOT_AVAILABLE,
        Reason.ALLOCATION_FAILED,
    }


# AKS's synchronous refusals, rendered by the fake ARM server's own templates (the shapes AKS really sends).
def _aks_refusal(kind: str) -> tuple[int, dict[str, Any]]:
    from kaito_ctrl.sandbox.fakearm.faults import Fault, FaultKind

    fault = Fault(FaultKind(kind))
    context = {
        "pool": "ws1",
        "cluster": "c",
        "resource_group": "rg",
        "location": "eastus",
        "vm_size": "Standard_NC24ads_A100_v4",
    }
    return fault.http_status, {"error": fault.error(context)}


@pytest.mark.parametrize(
    ("kind", "reason", "code"),
    [
        ("precondition_sku", Reason.SKU_NOT_AVAILABLE, "PreconditionFailed"),
        ("precondition_quota", Reason.QUOTA_EXCEEDED, "PreconditionFailed"),
        ("vm_size_not_supported", Reason.SKU_NOT_AVAILABLE, "VMSizeNotSupported"),
        ("not_supported_for_subscription", Reason.SKU_NOT_AVAILABLE, "BadRequest"),
        ("restricted_by_aks", Reason.SKU_NOT_AVAILABLE, "BadRequest"),
        ("policy", Reason.POLICY_DENIED, "RequestDisallowedByPolicy"),
    ],
)
def test_aks_synchronous_refusals_are_classified_by_their_text(kind: str, reason: Reason, code: str) -> None:
    status, body = _aks_refusal(kind)
    err = classify_arm_error(status, body)
    assert (err.reason, err.code, err.status) == (reason, code, status)
    assert err.message == body["error"]["message"]  # kept verbatim for the support ticket
    assert not err.retryable
    assert "Standard_NC24ads_A100_v4" in err.message or kind == "policy" or kind == "precondition_quota"


def test_a_plain_precondition_failed_is_still_a_conflict() -> None:
    err = classify_arm_error(412, {"error": {"code": "PreconditionFailed", "message": "etag mismatch"}})
    assert err.reason is Reason.CONFLICT


def test_a_create_preempted_by_delete_is_transient_with_its_code() -> None:
    body = {"status": "Failed", "error": {"code": "AKSOperationPreemptedByDelete", "message": "preempted"}}
    err = classify_arm_error(200, body)
    assert (err.reason, err.code) == (Reason.TRANSIENT, "AKSOperationPreemptedByDelete")
