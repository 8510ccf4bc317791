"""The admission webhook's HTTPS server. Its TLS context can take a new certificate at run time: new
connections get the new one, without a restart (``load_cert_chain`` on the live SSLContext)."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web

from kaito_ctrl import pki
from kaito_ctrl.webhook import admission
from kaito_ctrl.webhook.certs import CertBundle
from kaito_ctrl.webhook.references import GetConfigMap, reference_errors

log = structlog.get_logger(__name__)

MAX_BODY = 3 * 1024 * 1024  # the apiserver's own request size limit
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
    ) -> None:
        self.host = host
        self.node_provisioner = node_provisioner
        # Set to look up the ConfigMaps a new Workspace names (references.py); None skips the check.
        self.get_configmap = get_configmap
        self.port = port
        self._dir = Path(cert_dir or tempfile.mkdtemp(prefix="kaito-webhook-"))
        self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.serving_serial: int | None = None
        self.requests = 0
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(VALIDATE_PATH, self._validate)
        app.router.add_post(MUTATE_PATH, self._mutate)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_timeout)

    def load(self, bundle: CertBundle) -> None:
        """Serve ``bundle``'s certificate on every new connection from now on."""
        cert, key = self._dir / "tls.crt", self._dir / "tls.key"
        key.touch(mode=0o600)
        key.write_bytes(bundle.key)
        cert.write_bytes(bundle.cert)
        self.ssl_context.load_cert_chain(str(cert), str(key))
        self.serving_serial = pki.serial(bundle.cert)
        log.info(
            "webhook serving certificate loaded", serial=hex(self.serving_serial), expires=bundle.expires
        )

    async def start(self) -> None:
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
        await self._runner.cleanup()

    async def _review(self, request: web.Request) -> Any:
        try:
            return orjson.loads(await request.read())
        except (orjson.JSONDecodeError, ValueError):
            return None

    async def _validate(self, request: web.Request) -> web.Response:
        self.requests += 1
        review = await self._review(request)
        out = admission.validate(review, node_provisioner=self.node_provisioner)
        req = review.get("request") if isinstance(review, dict) else None
        if out["response"]["allowed"] and self.get_configmap is not None and isinstance(req, dict):
            obj = req.get("object")
            if req.get("operation") == "CREATE" and isinstance(obj, dict):
                namespace = str(req.get("namespace") or (obj.get("metadata") or {}).get("namespace") or "")
                errors = await reference_errors(obj, namespace, self.get_configmap)
                if errors:
                    out = admission.refusal(out["response"]["uid"], errors)
        log.debug("admission review", kind="validate", allowed=out["response"]["allowed"])
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def _mutate(self, request: web.Request) -> web.Response:
        self.requests += 1
        out = admission.mutate(await self._review(request))
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")
