"""Is a download URL safe for the cluster to fetch? Refuse loopback, private, link-local, CGNAT, unspecified
and cloud-metadata destinations, so a Workspace cannot make the tuning job read internal services (SSRF)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "instance-data.ec2.internal",
        "instance-data",
        "metadata.azure.com",
        "metadata",
    }
)
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".svc", ".cluster.local")
METADATA_IPS = frozenset({"169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"})


def _ip_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if str(ip) in METADATA_IPS:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return _ip_problem(ip.ipv4_mapped)
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "a carrier-grade NAT (shared) address"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_reserved:
        return "a reserved address"
    return None


def url_problem(url: str) -> str | None:
    """None when the URL may be fetched, else why not (a phrase for an error message)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return f"must use http or https, not {parts.scheme or 'no scheme'!r}"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "has no host"
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port"
    del port
    if host in METADATA_HOSTS:
        return "points at a cloud metadata service"
    if host == "localhost" or host.endswith(LOCAL_SUFFIXES):
        return "points at a local or cluster-internal host"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # Numeric forms that resolvers accept as IPv4 (e.g. 2130706433, 0x7f.1) are refused outright.
        if host.replace(".", "").isdigit() or host.startswith("0x"):
            return "uses a numeric host form that is not a plain IP address"
        return None
    problem = _ip_problem(ip)
    return f"points at {problem}" if problem else None
