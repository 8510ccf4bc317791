"""kaito-ctrl reads a kubeconfig with static credentials itself (kube/config.py static_kubeconfig) and hands
anything else to kubernetes-asyncio's loader. Judged against the library: for each static shape both give the
same connection (server, TLS verification, credentials, the bytes of each certificate and key); the shapes it
does not read reach the library, which still loads them; and a plain kubeconfig never imports the library."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_ctrl.kube import config as kconfig

CA, CERT, KEY = b"-----CA-----\n", b"-----CERT-----\n", b"-----KEY-----\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _write(tmp: Path, cluster: dict[str, Any], user: dict[str, Any], **extra: Any) -> Path:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "main",
        "clusters": [{"name": "c", "cluster": cluster}, {"name": "other", "cluster": {"server": "https://other:1"}}],
        "users": [{"name": "u", "user": user}, {"name": "nobody", "user": {"token": "other-token"}}],
        "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u", "namespace": "team"}},
                     {"name": "second", "context": {"cluster": "other", "user": "nobody"}}],
        **extra,
    }  # fmt: skip
    path = tmp / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def _library(path: Path, context: str | None = None) -> kconfig.ConnectionConfig:
    import asyncio

    from kubernetes_asyncio import config as k8s_config
    from kubernetes_asyncio.client import Configuration

    cfg = Configuration()
    asyncio.run(k8s_config.load_kube_config(config_file=str(path), context=context, client_configuration=cfg))
    return kconfig._from_configuration(cfg)


def _read(name: str | None) -> bytes | None:
    return Path(name).read_bytes() if name else None


def _same(ours: kconfig.ConnectionConfig | None, theirs: kconfig.ConnectionConfig) -> None:
    assert ours is not None, "a static kubeconfig is read without the library"
    assert (ours.server, ours.verify, ours.current_authorization()) == (
        theirs.server, theirs.verify, theirs.current_authorization(),
    )  # fmt: skip
    for field in ("ca_file", "cert_file", "key_file"):
        assert _read(getattr(ours, field)) == _read(getattr(theirs, field)), field


def test_inline_certificates(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"server": "https://127.0.0.1:6443/", "certificate-authority-data": _b64(CA)},
        {"client-certificate-data": _b64(CERT), "client-key-data": _b64(KEY)},
    )
    ours = kconfig.static_kubeconfig(str(path))
    _same(ours, _library(path))
    assert ours is not None and ours.key_file and os.stat(ours.key_file).st_mode & 0o077 == 0, (
        "key kept private"
    )


def test_files_relative_to_the_kubeconfig_and_a_token(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(CA)
    path = _write(
        tmp_path, {"server": "https://k:443", "certificate-authority": "pki/ca.crt"}, {"token": "s3cret"}
    )
    _same(kconfig.static_kubeconfig(str(path)), _library(path))


def test_a_token_file_is_read_again_when_it_rotates(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("one\n")
    path = _write(
        tmp_path, {"server": "https://k:443", "insecure-skip-tls-verify": True}, {"tokenFile": "token"}
    )
    ours = kconfig.static_kubeconfig(str(path))
    assert ours is not None and not ours.verify and ours.current_authorization() == "Bearer one"
    (tmp_path / "token").write_text("two\n")
    assert ours.current_authorization() == "Bearer two"


def test_the_named_context_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, {"server": "https://k:443"}, {"token": "mine"})
    _same(kconfig.static_kubeconfig(str(path), "second"), _library(path, "second"))
    monkeypatch.setenv("KUBECONFIG", str(path))
    _same(kconfig.static_kubeconfig(), _library(path))
    monkeypatch.setenv("KUBECONFIG", f"{path}{os.pathsep}{path}")
    assert kconfig.static_kubeconfig() is None, "merging several files is the library's"


@pytest.mark.parametrize(
    "user",
    [
        {"username": "admin", "password": "pw"},
        {"token": "t", "as": "someone-else"},
        {"auth-provider": {"name": "oidc", "config": {}}},
    ],
)
def test_other_credentials_go_to_the_library(tmp_path: Path, user: dict[str, Any]) -> None:
    path = _write(tmp_path, {"server": "https://k:443"}, user)
    assert kconfig.static_kubeconfig(str(path)) is None


def test_an_exec_plugin_is_loaded_by_the_library(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.sh"
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": "from-exec"}}  # fmt: skip
    plugin.write_text(f"#!/bin/sh\necho '{json.dumps(credential)}'\n")
    plugin.chmod(0o755)
    exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                          "interactiveMode": "Never"}}  # fmt: skip
    path = _write(tmp_path, {"server": "https://k:443"}, exec_user)
    assert kconfig.static_kubeconfig(str(path)) is None
    import asyncio

    got = asyncio.run(kconfig.from_kubeconfig(str(path)))
    assert got.current_authorization() == "Bearer from-exec"


def test_a_plain_kubeconfig_never_imports_the_library(tmp_path: Path) -> None:
    path = _write(tmp_path, {"server": "https://k:443"}, {"token": "t"})
    code = (
        "import asyncio, sys\n"
        "import kaito_ctrl.cli.run, kaito_ctrl.controllers.workspace.setup\n"
        "from kaito_ctrl.kube.client import KubeClient\n"
        f"client = asyncio.run(KubeClient.from_kubeconfig({str(path)!r}))\n"
        "assert not [m for m in sys.modules if m.startswith('kubernetes_asyncio')], 'library imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such file; point --kubeconfig or KUBECONFIG at the cluster's kubeconfig"),
        ("clusters: [\n", "while parsing"),
        ("apiVersion: v1\nkind: Config\nclusters: []\n", "Expected key current-context"),
    ],
    ids=["missing", "not-yaml", "no-context"],
)
def test_run_without_a_usable_kubeconfig_says_which_and_what_to_do(
    tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAITO_", "KUBERNETES_SERVICE"))}
    env["KUBECONFIG"] = str(path)
    done = subprocess.run(
        [sys.executable, "-m", "kaito_ctrl.cli.main", "run", "--no-webhook", "--no-leader-elect"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith(f"kaito-ctrl run: kubeconfig {path}: "), done.stderr[-2000:]
    assert says in done.stderr and "Traceback" not in done.stderr
