"""The admission webhook's HTTPS server. Its TLS context can take a new certificate at run time: new
connections get the new one, without a restart (``load_cert_chain`` on the live SSLContext).

It degrades instead of dying under a flood: bodies are limited to what a Workspace needs (256 KiB) and must
arrive within a deadline, at most ``max_reading`` bodies are being read and ``max_pending`` reviews wait for
validation at once (beyond that the answer is an immediate 429), and validation runs in a small thread pool,
never on the event loop that renews the leader Lease. Any malformed review is answered 400, never 500.
TLS 1.2 is limited to AEAD (GCM/ChaCha20) ECDHE suites."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web

from kaito_ctrl import pki
from kaito_ctrl.api import podsecurity
from kaito_ctrl.webhook import admission
from kaito_ctrl.webhook.certs import CertBundle
from kaito_ctrl.webhook.references import GetConfigMap, reference_errors

log = structlog.get_logger(__name__)

MAX_BODY = 256 * 1024  # a Workspace is a few KiB; even a large inference.template fits many times over
READ_TIMEOUT = 5.0  # seconds for the whole body to arrive
MAX_READING = 32  # bodies being received at once (bounds memory at MAX_READING * MAX_BODY)
MAX_PENDING = 16  # reviews queued for or in validation
VALIDATION_THREADS = 2
# ECDHE with AEAD only: no CBC (Lucky13-class padding oracles), no static RSA key exchange.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
VALIDATE_PATH = "/validate-workspace"
MUTATE_PATH = "/mutate-workspace"


class WebhookServer:
    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 9443,
        cert_dir: str | None = None,
        keepalive_timeout: float = 75.0,
        *,
        node_provisioner: str | None = None,
        get_configmap: GetConfigMap | None = None,
        max_body: int = MAX_BODY,
        read_timeout: float = READ_TIMEOUT,
        max_reading: int = MAX_READING,
        max_pending: int = MAX_PENDING,
        threads: int = VALIDATION_THREADS,
        namespace_allows: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.host = host
        self.node_provisioner = node_provisioner
        # Set to look up the ConfigMaps a new Workspace names (references.py); None skips the check.
        self.get_configmap = get_configmap
        self.port = port
        self._dir = Path(cert_dir or tempfile.mkdtemp(prefix="kaito-webhook-"))
        self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ssl_context.set_ciphers(TLS12_CIPHERS)
        self.serving_serial: int | None = None
        self.requests = 0
        self.shed = 0  # requests answered 429 because the server was full
        self.max_body, self.read_timeout = max_body, read_timeout
        self._reading = asyncio.Semaphore(max_reading)
        self._pending = asyncio.Semaphore(max_pending)
        self._threads, self._keepalive_timeout = threads, keepalive_timeout
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="admission")
        # Pod Security baseline: on when given a way to read a namespace's admin annotation.
        self.namespace_allows = namespace_allows
        self._runner = self._build_runner()

    def _build_runner(self) -> web.AppRunner:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post(VALIDATE_PATH, self._validate)
        app.router.add_post(MUTATE_PATH, self._mutate)
        app.router.add_get("/healthz", self._healthz)
        # Small per-connection buffers and header limits: a review needs a handful of short headers.
        return web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=self._keepalive_timeout,
            max_headers=32,
            read_bufsize=64 * 1024,
        )

    def load(self, bundle: CertBundle) -> None:
        """Serve ``bundle``'s certificate on every new connection from now on."""
        cert, key = self._dir / "tls.crt", self._dir / "tls.key"
        pki.write_private(key, bundle.key)
        cert.write_bytes(bundle.cert)
        self.ssl_context.load_cert_chain(str(cert), str(key))
        self.serving_serial = pki.serial(bundle.cert)
        log.info(
            "webhook serving certificate loaded", serial=hex(self.serving_serial), expires=bundle.expires
        )

    async def start(self) -> None:
        if self._stopped:
            # Started again after a stop (the supervisor restarting the webhook): a runner and a thread pool
            # serve once, so build fresh ones.
            self._runner = self._build_runner()
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="admission")
            self._stopped = False
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])

    @property
    def open_connections(self) -> int:
        server = self._runner.server
        return len(server.connections) if server is not None else 0

    async def stop(self) -> None:
        self._stopped = True
        await self._runner.cleanup()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _body(self, request: web.Request) -> bytes | web.Response:
        """The body, or the error response: 413 when too large, 408 when too slow, 429 when full."""
        if request.content_length is not None and request.content_length > self.max_body:
            return _status(413, f"the review is larger than {self.max_body} bytes")
        if self._reading.locked():
            self.shed += 1
            return _status(429, "too many reviews being received; retry")
        async with self._reading:
            try:
                async with asyncio.timeout(self.read_timeout):
                    return (
                        await request.content.readexactly(request.content_length)
                        if (request.content_length is not None)
                        else await _read_capped(request, self.max_body)
                    )
            except TimeoutError:
                return _status(408, f"the review did not arrive within {self.read_timeout:g}s")
            except (asyncio.IncompleteReadError, ConnectionError):
                return _status(400, "the review body ended early")
            except _TooLarge:
                return _status(413, f"the review is larger than {self.max_body} bytes")

    async def _answer(
        self, request: web.Request, review: Callable[[Any], dict[str, Any]], *, validating: bool = False
    ) -> web.Response:
        self.requests += 1
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if self._pending.locked():
            self.shed += 1
            return _status(429, "too many reviews waiting for validation; retry")
        loop = asyncio.get_running_loop()
        async with self._pending:
            out = await loop.run_in_executor(self._pool, _review_safely, review, body)
            if validating:
                out = await self._references(body, out)
            if validating and self.namespace_allows is not None and out["response"]["allowed"]:
                namespace, violations = await loop.run_in_executor(self._pool, _baseline_violations, body)
                if violations and not await self.namespace_allows(namespace):
                    out = _pod_security_refusal(out["response"]["uid"], namespace, violations)
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def _validate(self, request: web.Request) -> web.Response:
        return await self._answer(request, self._validate_review, validating=True)

    def _validate_review(self, review: Any) -> dict[str, Any]:
        return admission.validate(review, node_provisioner=self.node_provisioner)

    async def _references(self, body: bytes, out: dict[str, Any]) -> dict[str, Any]:
        """Live checks of what the Workspace names (its ConfigMaps exist) on a create the rules admitted."""
        if self.get_configmap is None or not out["response"]["allowed"]:
            return out
        try:
            review = orjson.loads(body)
        except orjson.JSONDecodeError:
            return out
        req = review.get("request") if isinstance(review, dict) else None
        obj = req.get("object") if isinstance(req, dict) else None
        if not isinstance(req, dict) or req.get("operation") != "CREATE" or not isinstance(obj, dict):
            return out
        namespace = str(req.get("namespace") or (obj.get("metadata") or {}).get("namespace") or "")
        errors = await reference_errors(obj, namespace, self.get_configmap)
        return admission.refusal(out["response"]["uid"], errors) if errors else out

    async def _mutate(self, request: web.Request) -> web.Response:
        return await self._answer(request, admission.mutate)

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")


class _TooLarge(Exception):
    pass


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """A chunked body, read until its end or past ``limit`` (then _TooLarge, nothing more is buffered)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        parts.append(chunk)
    return b"".join(parts)


def _status(code: int, message: str) -> web.Response:
    return web.Response(status=code, text=message + "\n", headers={"Connection": "close"})


def _review_safely(review: Callable[[Any], dict[str, Any]], body: bytes) -> dict[str, Any]:
    """Parse and review in a pool thread. Malformed input of any kind (bad JSON, nesting deep enough to
    exhaust recursion, shapes the validators did not expect) is answered as a 400 review, never a 500."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    try:
        return review(parsed)
    except (RecursionError, TypeError, AttributeError, ValueError, KeyError) as e:
        uid = ""
        if isinstance(parsed, dict) and isinstance(parsed.get("request"), dict):
            raw = parsed["request"].get("uid")
            uid = raw if isinstance(raw, str) else ""
        log.info("malformed admission review", error=type(e).__name__)
        return {
            "apiVersion": admission.API_VERSION,
            "kind": "AdmissionReview",
            "response": {
                "uid": uid,
                "allowed": False,
                "status": {
                    "code": 400,
                    "message": f"malformed review: {type(e).__name__}",
                    "reason": "BadRequest",
                },
            },
        }


def _baseline_violations(body: bytes) -> tuple[str, list[tuple[str, str]]]:
    try:
        request = orjson.loads(body)["request"]
        if request.get("operation") not in ("CREATE", "UPDATE") or admission.ratcheted(request):
            return "", []  # a ratcheted update is admitted unjudged, by the baseline too (admission.py)
        return str(request.get("namespace") or ""), podsecurity.workspace_violations(request["object"])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, RecursionError):
        return "", []


def _pod_security_refusal(uid: str, namespace: str, violations: list[tuple[str, str]]) -> dict[str, Any]:
    listed = "; ".join(f"{path}: {why}" for path, why in violations[:10])
    message = (
        f"the Workspace breaks the Pod Security baseline profile: {listed}. A cluster administrator can allow "
        f"it for namespace {namespace} with the annotation {podsecurity.ALLOW_ANNOTATION}=true"
    )
    return {
        "apiVersion": admission.API_VERSION,
        "kind": "AdmissionReview",
        "response": {
            "uid": uid,
            "allowed": False,
            "status": {"code": 403, "message": message, "reason": "Forbidden"},
        },
    }
