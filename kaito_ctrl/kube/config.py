"""Connection settings for the apiserver, from a kubeconfig or the in-cluster service account.

A kubeconfig whose context holds only static credentials (a token or token file, a client certificate and key,
a CA; inline or as files) is read here. Anything else (exec plugins, auth providers, basic auth, impersonation,
proxies, several files in KUBECONFIG) goes to kubernetes-asyncio's loader, imported only then: the library
costs the process about 35 MiB of modules (its generated API client and models come with the loader), which
an in-cluster controller, or one run with a plain kubeconfig, need not carry (docs/performance.md, P8).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
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


class KubeconfigError(ValueError):
    """No usable kubeconfig: the message names the file and what to do, for a person to read (no traceback)."""


def _kubeconfig_source(path: str | None) -> str:
    """The kubeconfig to read, chosen as kubectl and the library's loader choose it (several when it holds
    os.pathsep)."""
    return path or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def _existing_source(path: str | None) -> str:
    """The kubeconfig the library's loader will read, refused here if it is not a file."""
    source = _kubeconfig_source(path)
    if os.pathsep not in source and not Path(source).expanduser().is_file():
        raise KubeconfigError(
            f"kubeconfig {source}: no such file; point --kubeconfig or KUBECONFIG at the cluster's kubeconfig "
            "(`kaito-ctrl sandbox up` prints one), or run in a pod, where the service account is used"
        )
    return source


async def from_kubeconfig(path: str | None = None, context: str | None = None) -> ConnectionConfig:
    static = static_kubeconfig(path, context)
    if static is not None:
        return static
    from kubernetes_asyncio import config as k8s_config
    from kubernetes_asyncio.client import Configuration

    source = _existing_source(path)
    cfg = Configuration()
    try:
        await k8s_config.load_kube_config(config_file=path, context=context, client_configuration=cfg)
    except (k8s_config.ConfigException, yaml.YAMLError) as e:
        raise KubeconfigError(f"kubeconfig {source}: {' '.join(str(e).split())}") from None
    return _from_configuration(cfg)


# The keys a static context may hold; any other key means the library's loader decides.
_CLUSTER_KEYS = {"server", "certificate-authority", "certificate-authority-data", "insecure-skip-tls-verify",
                 "extensions"}  # fmt: skip
_USER_KEYS = {"token", "tokenFile", "client-certificate", "client-certificate-data", "client-key",
              "client-key-data", "extensions"}  # fmt: skip
_DATA_FILES: list[str] = []


def _remove_data_files() -> None:
    for name in _DATA_FILES:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _data_file(data: str, suffix: str) -> str:
    """Inline (base64) credential data as a file only this user can read, removed at exit: the ssl module loads
    client certificates and keys from files, as kubernetes-asyncio's loader does too."""
    if not _DATA_FILES:
        atexit.register(_remove_data_files)
    fd, name = tempfile.mkstemp(prefix="kaito-ctrl-kubeconfig-", suffix=suffix)  # mode 0600
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data))
    _DATA_FILES.append(name)
    return name


def _named(items: Any, name: str) -> dict[str, Any] | None:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return None


def static_kubeconfig(path: str | None = None, context: str | None = None) -> ConnectionConfig | None:
    """The connection of a kubeconfig context with static credentials only, or None when the library's loader
    must decide (see the module docstring). Relative file paths are relative to the kubeconfig's directory."""
    source = _kubeconfig_source(path)
    if os.pathsep in source:
        return None  # several files to merge
    file = Path(source).expanduser()
    try:
        doc = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError):
        return None  # the library's loader names the problem
    if not isinstance(doc, dict):
        return None
    ctx = _named(doc.get("contexts"), context or str(doc.get("current-context") or ""))
    ctx_body = (ctx or {}).get("context")
    if not isinstance(ctx_body, dict) or set(ctx_body) - {"cluster", "user", "namespace", "extensions"}:
        return None
    cluster = (_named(doc.get("clusters"), str(ctx_body.get("cluster"))) or {}).get("cluster")
    user = (_named(doc.get("users"), str(ctx_body.get("user") or "")) or {}).get("user") or {}
    if not isinstance(cluster, dict) or not isinstance(user, dict) or not cluster.get("server"):
        return None
    if set(cluster) - _CLUSTER_KEYS or set(user) - _USER_KEYS:
        return None

    def credential(section: dict[str, Any], name: str, suffix: str) -> str | None:
        """``name``-data (inline, base64) as a private file, else ``name`` as a path relative to the kubeconfig."""
        if section.get(f"{name}-data"):
            return _data_file(section[f"{name}-data"], suffix)
        if section.get(name):
            return str(file.parent / str(section[name]))  # an absolute path stays absolute
        return None

    ca = credential(cluster, "certificate-authority", ".crt")
    cert = credential(user, "client-certificate", ".crt")
    key = credential(user, "client-key", ".key")
    token = user.get("token")
    token_file = str(file.parent / str(user["tokenFile"])) if user.get("tokenFile") and not token else None
    authorization = f"Bearer {token}" if token else None
    if token_file:
        try:
            authorization = "Bearer " + Path(token_file).read_text().strip()
        except OSError:
            return None
    return ConnectionConfig(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=ca,
        cert_file=cert,
        key_file=key,
        authorization=authorization,
        token_file=token_file,
        verify=not bool(cluster.get("insecure-skip-tls-verify")),
    )


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
