"""Connection settings for the apiserver, from a kubeconfig or the in-cluster service account.

kubernetes-asyncio's loaders do the parsing (contexts, exec plugins, embedded certificate data); we only
read the result out of its Configuration and make requests ourselves.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import Configuration

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class ConnectionConfig:
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # A static bearer token ("Bearer ..."), or a file re-read on every refresh (projected SA tokens rotate).
    authorization: str | None = None
    token_file: str | None = None
    verify: bool = True

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def current_authorization(self) -> str | None:
        if self.token_file:
            try:
                return "Bearer " + Path(self.token_file).read_text().strip()
            except OSError:
                return self.authorization
        return self.authorization


def _from_configuration(cfg: Configuration) -> ConnectionConfig:
    auth = None
    keys = getattr(cfg, "api_key", {}) or {}
    # kubernetes-asyncio stores a kubeconfig token as api_key["BearerToken"] = "Bearer <token>".
    token = keys.get("BearerToken") or keys.get("authorization")
    if token:
        token = str(token)
        auth = token if token.lower().startswith("bearer ") else f"Bearer {token}"
    return ConnectionConfig(
        server=str(cfg.host).rstrip("/"),
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        authorization=auth,
        verify=bool(cfg.verify_ssl),
    )


async def from_kubeconfig(path: str | None = None, context: str | None = None) -> ConnectionConfig:
    cfg = Configuration()
    await k8s_config.load_kube_config(config_file=path, context=context, client_configuration=cfg)
    return _from_configuration(cfg)


def in_cluster() -> ConnectionConfig:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    return ConnectionConfig(
        server=f"https://{host}:{port}",
        ca_file=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
        token_file=str(SERVICE_ACCOUNT_DIR / "token"),
    )


def in_cluster_namespace(default: str = "kaito-system") -> str:
    try:
        return (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or default
    except OSError:
        return default
