"""A raw-JSON Kubernetes client: one aiohttp session, orjson bodies, typed errors, client-side throttling.

Objects are plain dicts, never generated model classes: the informer and controllers only ever look up a
few fields, and decoding into models costs 20-40x on watch streams. Writes use the content type that fits:
server-side apply (``application/apply-patch+yaml``, field manager ``kaito-ctrl``), JSON merge patch with
an optional resourceVersion lock, or PUT (which the apiserver refuses with 409 when stale).
"""

from __future__ import annotations

import asyncio
import builtins
import platform
import socket
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

from kaito_ctrl import __version__, metrics
from kaito_ctrl.kube import config as kconfig
from kaito_ctrl.kube.clock import REAL_CLOCK, Clock
from kaito_ctrl.kube.errors import ApiError, TooManyRequests, TransportError, error_for
from kaito_ctrl.kube.resources import Resource
from kaito_ctrl.kube.retryafter import RetryAfterPolicy
from kaito_ctrl.kube.throttle import DEFAULT_BURST, DEFAULT_QPS, FALLBACK_BURST, FALLBACK_QPS, TokenBucket

log = structlog.get_logger(__name__)

# Everything aiohttp and the socket layer raise when no usable answer arrived (disconnects, resets, TLS, DNS,
# timeouts, truncated payloads) and a body that is not the JSON the apiserver sends: one TransportError.
_TRANSPORT_FAILURES = (aiohttp.ClientError, OSError, orjson.JSONDecodeError)


def _transport_error(method: str, path: str, cause: BaseException) -> BaseException:
    """The TransportError for ``cause``; but when this task is being cancelled, the connection error is only
    how the cancellation surfaced inside the HTTP library, so the cancellation goes on (a caller that retries
    transport errors in a loop must still stop when cancelled)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        return asyncio.CancelledError()
    return TransportError(method, path, cause)


JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "kaito-ctrl"
DEFAULT_TIMEOUT = 30.0
_DISCOVERY_TTL = 30.0
# Every answer of an apiserver that runs API Priority and Fairness names the FlowSchema that classified it.
APF_HEADER = "X-Kubernetes-PF-FlowSchema-UID"

Params = Mapping[str, str | int | bool]


def _params(params: Params | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (params or {}).items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def default_user_agent() -> str:
    """client-go's shape (``binary/version (os/arch)``) plus the host name: replicas share a service account, so
    the user agent is what tells their requests apart in the apiserver's audit log."""
    return (
        f"kaito-ctrl/v{__version__} ({platform.system().lower()}/{platform.machine()}) {socket.gethostname()}"
    )


class KubeClient:
    def __init__(
        self,
        conn: kconfig.ConnectionConfig,
        *,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        clock: Clock = REAL_CLOCK,
        timeout: float = DEFAULT_TIMEOUT,
        retry_after: RetryAfterPolicy | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.conn = conn
        self.user_agent = user_agent or default_user_agent()
        self.host = conn.server
        self._metric_host = urlsplit(conn.server).netloc
        self._clock = clock
        # qps < 0: no client-side limit, as controller-runtime since v0.21 on SIG API Machinery's advice; the
        # apiserver's API Priority and Fairness paces every client fairly (429 + Retry-After, waited out). An
        # apiserver without it (its first answer lacks the APF header) gets the fallback bucket instead.
        self._throttle: TokenBucket | None = TokenBucket(qps, burst, clock) if qps > 0 else None
        self._apf_unchecked = qps <= 0
        self._retry_after = retry_after or RetryAfterPolicy()
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._discovery: dict[str, tuple[float, set[str]]] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    async def from_kubeconfig(
        cls,
        path: str | None = None,
        context: str | None = None,
        *,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
    ) -> KubeClient:
        return cls(await kconfig.from_kubeconfig(path, context), qps=qps, burst=burst)

    @classmethod
    async def in_cluster(cls, *, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST) -> KubeClient:
        return cls(kconfig.in_cluster(), qps=qps, burst=burst)

    @classmethod
    async def auto(cls, kubeconfig: str | None = None, **kw: Any) -> KubeClient:
        import os

        path = kubeconfig or os.environ.get("KUBECONFIG")
        if path or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            return await cls.from_kubeconfig(path, **kw)
        return await cls.in_cluster(**kw)

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.conn.ssl_context(), limit=100, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _headers(self, content_type: str | None, accept: str = JSON) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": self.user_agent}
        auth = self.conn.current_authorization()
        if auth:
            headers["Authorization"] = auth
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    # ------------------------------------------------------------------ raw requests
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: bytes | dict[str, Any] | list[Any] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send a request; a 429 is waited out as its Retry-After says and sent again (``retryafter.py``)."""
        retries = 0
        while True:
            try:
                return await self._request_once(
                    method, path, params=params, body=body, content_type=content_type, timeout=timeout
                )
            except TooManyRequests as e:
                wait = self._retry_after.wait(e.retry_after, retries)
                if wait is None:
                    raise
                retries += 1
                metrics.REST_CLIENT_REQUEST_RETRIES.labels("429", method, self._metric_host).inc()
                log.warning(
                    "apiserver asked to retry later; waiting as told", code=429, method=method,
                    path=path, retry_after=e.retry_after, wait=wait, retry=retries, reason=e.reason,
                )  # fmt: skip
                await self._clock.sleep(wait)

    async def _request_once(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: bytes | dict[str, Any] | list[Any] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        data: bytes | None
        if body is None:
            data = None
        elif isinstance(body, bytes):
            data = body
        else:
            data = orjson.dumps(body)
        if data is not None and content_type is None:
            content_type = JSON
        waited = await self._throttle.acquire() if self._throttle is not None else 0.0
        metrics.REST_CLIENT_RATE_LIMITER_DURATION.labels(method, self._metric_host).observe(waited)
        t0 = time.perf_counter()
        code = "<error>"
        try:
            async with self._sess().request(
                method,
                self.host + path,
                params=_params(params),
                data=data,
                headers=self._headers(content_type),
                timeout=aiohttp.ClientTimeout(total=timeout or self._timeout),
            ) as resp:
                code = str(resp.status)
                if self._apf_unchecked:
                    self._check_apf(resp)
                raw = await resp.read()
                if resp.status >= 400:
                    try:
                        status_body = orjson.loads(raw) if raw else {}
                    except orjson.JSONDecodeError:
                        status_body = {"message": raw.decode(errors="replace")[:500]}
                    raise error_for(resp.status, status_body, _retry_after(resp))
                return orjson.loads(raw) if raw else None
        except _TRANSPORT_FAILURES as e:
            raise _transport_error(method, path, e) from e
        finally:
            metrics.REST_CLIENT_REQUESTS.labels(code, method, self._metric_host).inc()
            metrics.REST_CLIENT_REQUEST_DURATION.labels(method, self._metric_host).observe(
                time.perf_counter() - t0
            )

    @property
    def client_limit(self) -> tuple[float, int] | None:
        """(qps, burst) of the client-side bucket, None when the apiserver's flow control alone paces this client."""
        return (self._throttle.qps, self._throttle.burst) if self._throttle is not None else None

    def _check_apf(self, resp: aiohttp.ClientResponse) -> None:
        self._apf_unchecked = False
        if resp.headers.get(APF_HEADER):
            log.info("apiserver runs API Priority and Fairness; no client-side request limit", host=self.host)
            return
        self._throttle = TokenBucket(FALLBACK_QPS, FALLBACK_BURST, self._clock)
        log.warning(
            "apiserver answered without API Priority and Fairness; limiting this client's requests",
            host=self.host, qps=FALLBACK_QPS, burst=FALLBACK_BURST,
        )  # fmt: skip

    # ------------------------------------------------------------------ verbs
    async def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        return dict(await self.request("GET", res.path(namespace, name)))

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        params: dict[str, str | int | bool] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit:
            params["limit"] = limit
        if continue_token:
            params["continue"] = continue_token
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        if resource_version_match:
            params["resourceVersionMatch"] = resource_version_match
        return dict(await self.request("GET", res.path(namespace), params=params, timeout=timeout))

    async def list_all(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        items: builtins.list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = await self.list(
                res,
                namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                limit=500,
                continue_token=token,
            )
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    async def create(
        self, res: Resource, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        return dict(await self.request("POST", res.path(ns), body=obj))

    async def replace(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return dict(await self.request("PUT", res.path(meta.get("namespace"), meta["name"]), body=obj))

    async def replace_status(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        path = res.path(meta.get("namespace"), meta["name"], "status")
        return dict(await self.request("PUT", path, body=obj))

    async def merge_patch(
        self,
        res: Resource,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        if resource_version is not None:
            # A resourceVersion inside a merge patch is a precondition: 409 if the object moved on.
            patch = {
                **patch,
                "metadata": {**(patch.get("metadata") or {}), "resourceVersion": resource_version},
            }
        path = res.path(namespace, name, subresource)
        return dict(await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH))

    async def apply(
        self,
        res: Resource,
        obj: dict[str, Any],
        *,
        field_manager: str = FIELD_MANAGER,
        force: bool = True,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        meta = obj["metadata"]
        body = {"apiVersion": res.api_version, "kind": res.kind, **obj}
        path = res.path(meta.get("namespace"), meta["name"], subresource)
        params: dict[str, str | int | bool] = {"fieldManager": field_manager}
        if force:
            params["force"] = True
        # JSON is valid YAML, so the apply content type takes an orjson body.
        return dict(await self.request("PATCH", path, params=params, body=body, content_type=APPLY_PATCH))

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = "Background",
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        pre = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if pre:
            body["preconditions"] = pre
        out = await self.request("DELETE", res.path(namespace, name), body=body)
        return dict(out) if isinstance(out, dict) else None

    # ------------------------------------------------------------------ watch
    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str,
        timeout_seconds: int,
        allow_bookmarks: bool = True,
        label_selector: str | None = None,
        field_selector: str | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield watch events ({"type", "object"}) until the server closes the stream.

        ERROR events are raised as typed errors (410 -> Gone). ``read_timeout`` bounds the silence between
        two chunks; with bookmarks on, a healthy stream is never silent for long.
        """
        params: dict[str, str | int | bool] = {
            "watch": True,
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": allow_bookmarks,
        }
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if self._throttle is not None:
            await self._throttle.acquire()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=read_timeout)
        code = "<error>"
        try:
            async with self._sess().get(
                self.host + res.path(namespace),
                params=_params(params),
                headers=self._headers(None),
                timeout=timeout,
            ) as resp:
                code = str(resp.status)
                if resp.status >= 400:
                    raw = await resp.read()
                    try:
                        body = orjson.loads(raw) if raw else {}
                    except orjson.JSONDecodeError:
                        body = {}
                    raise error_for(resp.status, body, _retry_after(resp))
                async for event in decode_watch_stream(resp.content.iter_any()):
                    yield event
        except _TRANSPORT_FAILURES as e:
            raise _transport_error("WATCH", res.path(namespace), e) from e
        finally:
            metrics.REST_CLIENT_REQUESTS.labels(code, "WATCH", self._metric_host).inc()

    # ------------------------------------------------------------------ discovery
    async def crd_installed(self, group: str, version: str, plural: str) -> bool:
        key = f"{group}/{version}"
        cached = self._discovery.get(key)
        now = time.monotonic()
        if cached is None or now - cached[0] > _DISCOVERY_TTL:
            try:
                doc = await self.request("GET", f"/apis/{group}/{version}")
                names = {r["name"] for r in doc.get("resources", [])}
            except ApiError as e:
                if e.status != 404:
                    raise
                names = set()
            cached = (now, names)
            self._discovery[key] = cached
        return plural in cached[1]


async def decode_watch_stream(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """Split a chunked watch response into events (one JSON document per line), parsed with orjson."""
    buf = b""
    async for chunk in chunks:
        buf = buf + chunk if buf else chunk
        if b"\n" not in chunk:
            continue
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line:
                yield _event(line)
    if buf.strip():
        yield _event(buf)


def _event(line: bytes) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(line)
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        raise error_for(int(status.get("code") or 500), status)
    return event
