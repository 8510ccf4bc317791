"""The admission webhook's HTTPS server. Its TLS context can take a new certificate at run time: new
connections get the new one, without a restart (``load_cert_chain`` on the live SSLContext).

It degrades instead of dying under a flood: bodies are limited to what a Workspace needs (256 KiB) and must
arrive within a deadline, at most ``max_reading`` bodies are being read and ``max_pending`` reviews wait for
validation at once (beyond that the answer is an immediate 429), and validation runs in a small thread pool,
never on the event loop that renews the leader Lease. Any malformed review is answered 400, never 500.
TLS 1.2 is limited to AEAD (GCM/ChaCha20) ECDHE suites.

Connections are bounded too: at most ``max_connections`` sockets are open (counted from the TCP accept, so
handshakes in progress count; beyond the cap a new socket is closed at once, before any TLS work), the TLS
handshake must finish within ``handshake_timeout``, and a request head (request line and headers) must arrive
within ``header_timeout`` of the connection being made or, on a keep-alive connection, of its first byte after
the previous response (Go's ReadHeaderTimeout; an idle keep-alive connection is the keepalive_timeout's)."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

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
HEADER_TIMEOUT = 10.0  # seconds for a request head to arrive (the apiserver's is a few hundred bytes)
HANDSHAKE_TIMEOUT = 10.0  # seconds for the TLS handshake (asyncio's default is 60)
# Open sockets, handshaking ones included. Each is a file descriptor of the process that also holds the
# controllers' apiserver connections (informer watches, the Lease, Events) and the cloud clients. Python does not
# raise RLIMIT_NOFILE's soft limit, and it can be 1024 in a container: containerd 2.x and newer Docker dropped
# LimitNOFILE=infinity from their units (containerd#8924, moby#45534), leaving systemd's 1024 soft / 524288
# hard, which containers inherit (this image does not raise it; containerd 1.x units give infinity, usually
# 1048576). 256 leaves three quarters of a 1024 limit to the rest. Under a connection flood, refused sockets also hold a descriptor from their accept to
# their close a loop iteration or two later (asyncio accepts up to the backlog, 128, per wake-up): the flood
# bench peaked at 520 descriptors in all (docs/security.md). The apiserver keeps a few keep-alive connections.
MAX_CONNECTIONS = 256
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
        header_timeout: float = HEADER_TIMEOUT,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
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
        self.header_timeout, self.handshake_timeout = header_timeout, handshake_timeout
        self.max_connections = max_connections
        self.refused_connections = 0  # sockets closed at accept because max_connections were open
        self.header_timeouts = 0  # connections closed because no request head arrived in time
        # Accepted and not yet closed, TLS handshakes in progress included.
        self._sockets: set[_Socket] = set()
        self._listener: asyncio.Server | None = None
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
        app = web.Application(client_max_size=self.max_body, middlewares=[_head_complete])
        app.router.add_post(VALIDATE_PATH, self._validate)
        app.router.add_post(MUTATE_PATH, self._mutate)
        app.router.add_get("/healthz", self._healthz)
        return web.AppRunner(app, **self._handler_args())

    def _handler_args(self) -> dict[str, Any]:
        # Small per-connection buffers and header limits: a review needs a handful of short headers.
        return {
            "access_log": None,
            "keepalive_timeout": self._keepalive_timeout,
            "max_headers": 32,
            "read_bufsize": 64 * 1024,
        }

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
        http = self._runner.server
        assert http is not None
        loop = asyncio.get_running_loop()
        args = self._handler_args()

        def accept() -> _Socket:
            return _Socket(self, _Connection(self, http, loop=loop, **args))

        # Our own listener instead of aiohttp's TCPSite, which passes neither a protocol of ours (for the
        # connection cap, counted at accept) nor ssl_handshake_timeout: TLS is layered by _Socket itself.
        self._listener = await loop.create_server(accept, self.host, self.port, backlog=128)
        if self.port == 0 and self._listener.sockets:
            self.port = int(self._listener.sockets[0].getsockname()[1])

    @property
    def open_connections(self) -> int:
        """HTTP connections (TLS handshake done) the server holds."""
        server = self._runner.server
        return len(server.connections) if server is not None else 0

    @property
    def open_sockets(self) -> int:
        """Accepted sockets not yet closed, handshaking and closing ones included (what max_connections caps)."""
        return len(self._sockets)

    async def stop(self) -> None:
        self._stopped = True
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await self._runner.cleanup()  # answers in-flight reviews, closes the HTTP connections
        for sock in list(self._sockets):  # still handshaking, or waiting for a peer's TLS close_notify
            sock.abort()
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


class _Socket(asyncio.sslproto.SSLProtocol):
    """One accepted TCP connection, before TLS: the connection cap is applied here, where the socket exists but
    no handshake work has been done, and the TLS layer above it is asyncio's own, given a handshake deadline.

    asyncio.sslproto.SSLProtocol is what ``loop.create_server(ssl=...)`` itself puts on every accepted socket
    (not a documented class; its constructor is the one typeshed declares from Python 3.11 on). We only add
    counting around connection_made and connection_lost, which the socket transport calls for every accepted
    socket, whatever happens to its handshake."""

    def __init__(self, server: WebhookServer, connection: _Connection) -> None:
        super().__init__(
            asyncio.get_running_loop(),
            connection,
            server.ssl_context,
            None,  # type: ignore[arg-type]  # no waiter: a failed handshake is the client's affair
            server_side=True,
            ssl_handshake_timeout=server.handshake_timeout,  # type: ignore[arg-type]  # a float is accepted
        )
        self._webhook = server
        self._raw: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server, raw = self._webhook, cast(asyncio.Transport, transport)  # a TCP socket's transport
        if len(server._sockets) >= server.max_connections:
            server.refused_connections += 1
            raw.abort()  # connection_lost follows; the socket never reaches TLS or HTTP
            return
        server._sockets.add(self)
        self._raw = raw
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._webhook._sockets.discard(self)
        self._raw = None
        super().connection_lost(exc)  # for a refused socket too: it marks the unused TLS transport closed

    def abort(self) -> None:
        if self._raw is not None:
            self._raw.abort()


class _Connection(RequestHandler):
    """aiohttp's HTTP/1.1 protocol with a deadline on each request head.

    The clock starts when the connection is made (after TLS) and, after a response, at the first byte of the
    next request; the _head_complete middleware stops it when the handler starts, i.e. when aiohttp has parsed
    the head. Reliance on aiohttp is kept to its public RequestHandler class: its constructor and the asyncio
    Protocol methods (RequestHandler has __slots__, so ours are declared)."""

    __slots__ = ("_head_timer", "_in_request", "_webhook")

    def __init__(self, server: WebhookServer, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._webhook = server
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head_clock()

    def data_received(self, data: bytes) -> None:
        # A byte while no request is being handled and no clock runs: the next head has begun. (Bytes of a
        # pipelined head that arrive during a request start no clock; the keep-alive timeout bounds those.)
        if data and not self._in_request and self._head_timer is None:
            self._start_head_clock()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def head_complete(self) -> None:
        self._stop_head_clock()
        self._in_request = True

    def request_done(self) -> None:
        self._in_request = False

    def _start_head_clock(self) -> None:
        self._head_timer = asyncio.get_running_loop().call_later(
            self._webhook.header_timeout, self._head_too_slow
        )

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        self._webhook.header_timeouts += 1
        log.debug(
            "request head not received in time; connection closed", timeout=self._webhook.header_timeout
        )
        if self.transport is not None:
            self.transport.abort()  # no TLS close_notify exchange with a client that is not talking
        self.force_close()


@web.middleware
async def _head_complete(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    connection = request.protocol
    if not isinstance(connection, _Connection):
        return await handler(request)
    connection.head_complete()
    try:
        return await handler(request)
    finally:
        connection.request_done()


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
