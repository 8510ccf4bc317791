"""Tuning URLs: the admission table of refused address classes, and the rendered downloader (no shell, curl argv
with -g, --proto, no -L, "--" before the URLs) plus the tuning pod's egress NetworkPolicy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_ctrl.api.netcheck import download_names, url_problem
from kaito_ctrl.api.validation import validate_workspace
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.tuning import render_tuning

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

REFUSED = [
    # Several URLs in one string, and shell / curl-option words (finding: tuning URLs reach a shell).
    "https://example.com/data.parquet http://169.254.169.254/metadata/instance?api-version=2021-02-01",
    "https://example.com/a.parquet\thttp://10.0.0.1/",
    "https://example.com/a.parquet\nhttp://10.0.0.1/",
    "-K/mnt/data/cfg",
    "https://example.com/$(id)",
    "https://example.com/`id`",
    "https://example.com/a\\b",
    'https://example.com/"x',
    # Mixed-radix and numeric IPv4.
    "http://127.0x0.0.1/",
    "http://169.254.0xa9fe/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    # curl globs.
    "http://{example.com,169.254.169.254}/",
    "http://example.com/[1-9].parquet",
    # Unicode tricks.
    "http://127\u30020\u30020\u30021/",
    "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3/",
    "http://ex\u0430mple.com/",
    # In-cluster names and the cluster domain.
    "http://kubernetes.default/",
    "http://kubernetes.default.svc/",
    "http://my-svc.other-ns/",
    "http://my-svc.other-ns.svc.cluster.local/",
    "http://localhost/",
    "http://localhost.example.com/",
    "http://printer.local/",
    "http://metadata.google.internal/",
    "http://metadata/",
    # Special-purpose addresses.
    "http://168.63.129.16/machine?comp=goalstate",
    "http://192.0.0.192/",
    "http://169.254.169.254/metadata/identity/oauth2/token",
    "http://100.100.100.200/",
    "http://100.64.1.1/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.0.1/",
    "http://0.0.0.0/",
    "http://198.18.0.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2001::1]/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    # Wildcard DNS that resolves to an embedded address.
    "http://127.0.0.1.nip.io/",
    "http://10-0-0-1.sslip.io/",
    "http://app.169.254.169.254.example.org/",
    # Schemes, user info, ports, trailing dots.
    "ftp://example.com/a",
    "file:///etc/passwd",
    "gopher://example.com/",
    "dict://example.com:11211/",
    "https://user:pw@example.com/a",
    "https://example.com@169.254.169.254/",
    "https://example.com:99999/",
    "https://example.com./a",
    "https:///data",
    "",
    "https://example.com/" + "a" * 3000,
]

ADMITTED = [
    "https://huggingface.co/datasets/x/resolve/main/a.parquet",
    "http://8.8.8.8/data",
    "https://example.com:8443/x",
    "https://data.example.com/path/to/file.parquet?download=1&x=%20",
    "https://xn--bcher-kva.ch/a",
    "http://[2606:4700:4700::1111]/a",
]


@pytest.mark.parametrize("url", REFUSED)
def test_url_refused(url: str) -> None:
    assert url_problem(url) is not None, url


@pytest.mark.parametrize("url", ADMITTED)
def test_url_admitted(url: str) -> None:
    assert url_problem(url) is None


def _tuning(urls: list[str]) -> dict[str, Any]:
    obj = yaml.safe_load((EXAMPLES / "fine-tuning" / "kaito_workspace_tuning_phi_3.yaml").read_text())
    obj["metadata"].update(namespace="team-a", uid="u-1")
    obj["tuning"]["input"] = {"name": "in", "urls": urls}
    return dict(obj)


def test_admission_names_the_url_field_and_quotes_a_short_prefix() -> None:
    huge = "http://10.0.0.1/" + "x" * 100_000
    errors = validate_workspace(_tuning(["https://example.com/ok.parquet", huge]))
    assert [e.path for e in errors] == ["tuning.input.urls[1]"]
    assert len(errors[0].message) < 300, "a huge value is never echoed back whole"


def _downloader(urls: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    objs = render_tuning(WorkspaceSpec(_tuning(urls)), node_requirements=[], registry="r.io")
    job = next(o for o in objs if o["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    return next(c for c in pod["initContainers"] if c["name"] == "data-downloader"), objs


def test_downloader_is_curl_argv_without_shell() -> None:
    urls = ["https://example.com/a.parquet", "https://other.example.com/x/a.parquet?sig=1", "https://e.org/"]
    container, _ = _downloader(urls)
    argv = container["command"]
    assert argv[0] == "curl" and "/bin/sh" not in argv and "env" not in container
    assert "-g" in argv and "-L" not in argv and "--location" not in argv
    assert argv[argv.index("--proto") + 1] == "=http,https"
    assert argv[argv.index("--") + 1 :] == urls, "each URL is exactly one argv element after --"
    outputs = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert outputs == ["a.parquet", "1-a.parquet", "data-2"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]


def test_download_names_are_plain_files() -> None:
    assert download_names(["https://e.com/../..%2F.bashrc", "https://e.com/-K"]) == ["_2F.bashrc", "K"]


def test_pusher_passes_image_as_argument_not_script_text() -> None:
    obj = _tuning(["https://example.com/a.parquet"])
    objs = render_tuning(WorkspaceSpec(obj), node_requirements=[], registry="r.io")
    pod = next(o for o in objs if o["kind"] == "Job")["spec"]["template"]["spec"]
    pusher = next(c for c in pod["containers"] if c["name"] == "pusher")
    image = obj["tuning"]["output"]["image"]
    assert image not in pusher["command"][2] and pusher["command"][4] == image
    assert pod["automountServiceAccountToken"] is False
    dshm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert dshm["emptyDir"]["sizeLimit"]


def test_tuning_pod_has_an_egress_policy() -> None:
    _, objs = _downloader(["https://example.com/a.parquet"])
    policy = next(o for o in objs if o["kind"] == "NetworkPolicy")
    job = next(o for o in objs if o["kind"] == "Job")
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    except_v4 = policy["spec"]["egress"][1]["to"][0]["ipBlock"]["except"]
    for cidr in ("169.254.0.0/16", "168.63.129.16/32", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
        assert cidr in except_v4
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_cluster_cidrs_join_the_egress_deny_list() -> None:
    from kaito_ctrl.api.netcheck import egress_deny

    objs = render_tuning(
        WorkspaceSpec(_tuning(["https://example.com/a.parquet"])),
        node_requirements=[],
        registry="r.io",
        cluster_cidrs="20.0.0.0/16, 2001:db9::/64",
    )
    policy = next(o for o in objs if o["kind"] == "NetworkPolicy")
    v4, v6 = (rule["ipBlock"]["except"] for rule in policy["spec"]["egress"][1]["to"])
    assert "20.0.0.0/16" in v4 and "169.254.0.0/16" in v4 and "2001:db9::/64" in v6
    with pytest.raises(ValueError, match="not-a-cidr"):
        egress_deny("10.0.0.0/8,not-a-cidr")
