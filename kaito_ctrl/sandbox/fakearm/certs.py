"""A test CA and the fake ARM server's certificate (SANs localhost and 127.0.0.1), kept across restarts."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from kaito_ctrl import pki

DEFAULT_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class ServerCerts:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def ensure_certs(directory: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> ServerCerts:
    """Reuse the CA and server certificate in ``directory``, or make them, so clients keep trusting a restart."""
    directory.mkdir(parents=True, exist_ok=True)
    certs = ServerCerts(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    if all(p.exists() for p in (certs.ca_file, certs.cert_file, certs.key_file)):
        return certs
    ca = pki.make_ca("kaito-ctrl-fake-arm-ca")
    dns = tuple(h for h in hosts if not h.replace(".", "").isdigit() and ":" not in h)
    ips = tuple(h for h in hosts if h not in dns)
    leaf = pki.issue(ca, dns[0] if dns else ips[0], dns_names=dns, ip_addresses=ips, server=True)
    certs.ca_file.write_bytes(ca.cert_pem)
    pki.write_pair(leaf, directory, "tls")
    return certs
