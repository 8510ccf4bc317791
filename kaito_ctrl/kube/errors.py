"""Typed Kubernetes API errors, built from the apiserver's Status objects."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer from the apiserver (a ``Status`` object with ``code`` and ``reason``)."""

    def __init__(self, status: int, reason: str = "", message: str = "", body: dict[str, Any] | None = None):
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}


class TransportError(OSError):
    """The request got no usable answer from the apiserver: refused, reset or dropped connection, TLS or DNS
    failure, timeout, a truncated or undecodable body. Always worth retrying.

    The client raises this for every such failure, whatever its HTTP library calls it, so callers catch one
    family (it is an ``OSError``, like the socket errors it stands for) and never import aiohttp to do so.
    The original exception is ``__cause__``.
    """

    retriable = True

    def __init__(self, method: str, path: str, cause: BaseException) -> None:
        detail = str(cause) or type(cause).__name__
        super().__init__(f"{method} {path}: {type(cause).__name__}: {detail}"[:500])
        self.method = method
        self.path = path
        self.cause = cause


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: a stale resourceVersion on update, or AlreadyExists on create (see ``reason``)."""

    @property
    def already_exists(self) -> bool:
        return self.reason == "AlreadyExists"


class Gone(ApiError):
    """410: the requested resourceVersion is too old (compacted)."""


class Invalid(ApiError):
    """422: schema, CEL or admission-webhook validation refused the object."""


class TooManyRequests(ApiError):
    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def error_for(status: int, body: dict[str, Any] | None, retry_after: float | None = None) -> ApiError:
    body = body or {}
    reason = str(body.get("reason", ""))
    message = str(body.get("message", ""))
    if status == 429:
        return TooManyRequests(status, reason, message, body, retry_after=retry_after)
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(status, reason, message, body)


class TerminalError(Exception):
    """Raised by a reconciler when retrying cannot help (bad input); the key is not requeued."""
