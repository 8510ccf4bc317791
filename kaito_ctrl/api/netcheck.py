"""Is a download URL safe for the cluster to fetch?

The URL reaches curl as one argv element (never a shell word), so admission only has to decide which hosts are
acceptable. The rule is an allow-list of shapes, not a deny-list of tricks: the URL is printable ASCII with no
whitespace, quotes, backslashes, curl glob characters or user info, and its host is either a plain DNS name with a
public-looking top-level label or a canonical IP address outside every special-purpose block (loopback, private,
link-local, CGNAT, the Azure WireServer, documentation, 6to4/NAT64/Teredo embeddings, ...). Anything else (mixed-
radix IPv4, full-width dots, enclosed alphanumerics, in-cluster short names, wildcard-DNS names that embed an
address) is refused. DNS and redirects still decide the real address at fetch time: curl runs without ``-L`` and
the tuning pod's egress NetworkPolicy denies link-local, the WireServer and the cluster ranges.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
# Printable ASCII minus space, quotes, "$", backslash, backtick, curl's glob characters {}[] (a bracketed IPv6 host
# is checked separately), and '<>^|' which no well-formed URL needs.
URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#@!&()*+,;=%]+")
DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DNS_NAME = re.compile(rf"{DNS_LABEL}(?:\.{DNS_LABEL})+")
# A top-level label is letters (or an IDN "xn--" label): "my-svc.other-ns" and "10.0.0.1.x" are not public names.
TOP_LABEL = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
CANONICAL_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}"
)
# An address written inside a name (127.0.0.1.nip.io, 10-0-0-1.sslip.io, 0a000001.nip.io) resolves to it.
EMBEDDED_IPV4 = re.compile(r"(?:^|[.-])\d{1,3}[.-]\d{1,3}[.-]\d{1,3}[.-]\d{1,3}(?:$|[.-])")
WILDCARD_DNS_SUFFIXES = (
    ".nip.io",
    ".sslip.io",
    ".xip.io",
    ".localtest.me",
    ".lvh.me",
    ".traefik.me",
    ".vcap.me",
    ".lacolhost.com",
    ".fuf.me",
)
METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "management.azure.com.internal",
    }
)
# Top-level labels that never name a public host: the cluster domain and kube-dns search suffixes
# ("kubernetes.default", "x.ns.svc", "x.svc.cluster.local"), mDNS, split-horizon conventions and the special-use
# names of RFC 6761/6762. Names such as "my-svc.other-ns" are already refused by the top-label shape rule.
INTERNAL_TOP_LABELS = frozenset(
    {
        "localhost",
        "local",
        "localdomain",
        "internal",
        "intranet",
        "lan",
        "home",
        "corp",
        "private",
        "svc",
        "cluster",
        "default",
        "arpa",
        "test",
        "invalid",
        "example",
        "onion",
    }
)
INTERNAL_SUFFIXES = (".svc.cluster.local", ".cluster.local", ".svc")

IPV4_BLOCKED = {
    ipaddress.IPv4Network(n): why
    for n, why in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("168.63.129.16/32", "the Azure WireServer"),
        ("169.254.0.0/16", "a link-local (cloud metadata) address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol assignment"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
}
IPV6_BLOCKED = {
    ipaddress.IPv6Network(n): why
    for n, why in (
        ("::/96", "an unspecified or IPv4-compatible address"),
        ("::1/128", "a loopback address"),
        ("::ffff:0:0/96", "an IPv4-mapped address"),
        ("64:ff9b::/96", "a NAT64 address embedding IPv4"),
        ("64:ff9b:1::/48", "a NAT64 address embedding IPv4"),
        ("100::/64", "a discard-only address"),
        ("2001::/23", "an IETF protocol assignment (Teredo, ORCHID, ...)"),
        ("2001:db8::/32", "a documentation address"),
        ("2002::/16", "a 6to4 address embedding IPv4"),
        ("fc00::/7", "a unique-local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
}


def ip_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address must not be fetched from, or None for a global unicast address."""
    table: dict[ipaddress.IPv4Network, str] | dict[ipaddress.IPv6Network, str]
    table = IPV4_BLOCKED if isinstance(ip, ipaddress.IPv4Address) else IPV6_BLOCKED
    for net, why in table.items():
        if ip in net:
            return why
    if isinstance(ip, ipaddress.IPv6Address) and not ip.is_global:
        return "a non-global IPv6 address"
    return None


def host_problem(host: str) -> str | None:
    """Why a URL host (lowercase, without brackets) is refused, or None."""
    if ":" in host:
        try:
            v6 = ipaddress.IPv6Address(host)
        except ValueError:
            return "has a malformed IPv6 host"
        if v6.compressed != host or v6.scope_id:
            return "must write its IPv6 host in canonical compressed form"
        why = ip_problem(v6)
        return f"points at {why}" if why else None
    if CANONICAL_IPV4.fullmatch(host):
        why = ip_problem(ipaddress.IPv4Address(host))
        return f"points at {why}" if why else None
    if not DNS_NAME.fullmatch(host) or len(host) > 253:
        return "must name its host as a plain DNS name (letters, digits, '-', '.') or a canonical IP address"
    labels = host.split(".")
    if not TOP_LABEL.fullmatch(labels[-1]):
        return "has a host that is not a public DNS name (numeric or in-cluster top-level label)"
    if host in METADATA_HOSTS:
        return "points at a cloud metadata service"
    if labels[-1] in INTERNAL_TOP_LABELS or labels[0] == "localhost" or host.endswith(INTERNAL_SUFFIXES):
        return "points at a local or cluster-internal host"
    if host.endswith(WILDCARD_DNS_SUFFIXES) or EMBEDDED_IPV4.search(host):
        return "uses a name that embeds an IP address (wildcard DNS)"
    return None


def url_problem(url: str) -> str | None:
    """None when the URL may be fetched, else why not (a phrase for an error message)."""
    if not isinstance(url, str) or not url:
        return "is empty"
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    if not URL_CHARS.fullmatch(url.replace("[", "").replace("]", "")):
        return (
            "contains whitespace, a control or non-ASCII character, a quote, a backslash or a curl glob "
            "character ({}); percent-encode it"
        )
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return (
            f"must use http or https, not {scheme[:10]!r}" if sep else "must start with http:// or https://"
        )
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return "must not carry user information (user:password@) in the URL"
    brackets = url.count("[") + url.count("]")
    if brackets and not (authority.startswith("[") and "]" in authority and brackets == 2):
        return "contains a curl glob character ([]); percent-encode it"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "has an invalid host or port"
    if port is not None and not 1 <= port <= 65535:
        return "has an invalid port"
    host = parts.hostname or ""
    if not host:
        return "has no host"
    if host.endswith("."):
        return "must not end its host with a dot"
    return host_problem(host)


def download_names(urls: list[str]) -> list[str]:
    """A safe file name per downloaded URL: the path's last segment reduced to [A-Za-z0-9._-], never hidden or
    empty, with an index added when two URLs would write the same file."""
    names: list[str] = []
    for i, url in enumerate(urls):
        base = urlsplit(url).path.rsplit("/", 1)[-1]
        clean = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".-")[:100] or f"data-{i}"
        names.append(clean if clean not in names else f"{i}-{clean}")
    return names


# What a fetching pod's egress NetworkPolicy excepts from "the internet": link-local (instance metadata), the
# Azure WireServer, loopback, and every private range (which holds the cluster's pod and service CIDRs).
EGRESS_DENY_V4 = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "168.63.129.16/32",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
)
EGRESS_DENY_V6 = ("::1/128", "fc00::/7", "fe80::/10")


def egress_deny(extra: str = "") -> tuple[list[str], list[str]]:
    """The IPv4 and IPv6 except-lists of the egress policy: the fixed ranges plus ``extra`` (comma-separated
    CIDRs, e.g. a cluster's public-range pod or service CIDR). ValueError names a malformed entry."""
    v4, v6 = list(EGRESS_DENY_V4), list(EGRESS_DENY_V6)
    for item in (x.strip() for x in extra.split(",")):
        if not item:
            continue
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError as e:
            raise ValueError(f"cluster CIDR {item[:64]!r} is not a CIDR: {e}") from None
        (v4 if net.version == 4 else v6).append(str(net))
    return v4, v6
