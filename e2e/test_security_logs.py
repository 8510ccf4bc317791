"""No secret reaches a log: after the other e2e tests have driven the sandbox (provisioning, faults, restarts,
failover), none of kaito-ctrl's, the fake ARM server's or the supervisor's log lines contains the ServiceAccount
token, the ARM bearer token, the webhook's private key or any Secret value of kaito-system."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from e2e.conftest import Sandbox


def _secret_values(sandbox: Sandbox) -> dict[str, str]:
    found: dict[str, str] = {}
    root = Path(sandbox.env["KAITO_SANDBOX_DIR"])
    kubeconfig = json.loads((root / "controlplane" / "kaito-ctrl.kubeconfig").read_text())
    found["service account token"] = kubeconfig["users"][0]["user"]["token"]
    token_file = root / "fake-arm" / "token"
    if token_file.exists():
        found["ARM bearer token"] = token_file.read_text().strip()
    for secret in sandbox.get_json("secrets", "-n", "kaito-system")["items"]:
        for key, value in (secret.get("data") or {}).items():
            name = f"secret {secret['metadata']['name']}/{key}"
            found[name + " (base64)"] = value
            decoded = base64.b64decode(value).decode(errors="replace")
            # PEM bodies: look for a distinctive line of the key material, not the armour lines.
            lines = [ln for ln in decoded.splitlines() if ln and not ln.startswith("-----")]
            if lines:
                found[name] = max(lines, key=len)
    return {k: v for k, v in found.items() if len(v) >= 16}


def test_no_secret_in_any_log_line(sandbox: Sandbox) -> None:
    if sandbox.external:
        pytest.skip("reads the sandbox's log files")
    root = Path(sandbox.env["KAITO_SANDBOX_DIR"])
    logs = [*root.glob("kaito-ctrl*.log"), root / "supervisor.log", root / "fake-arm" / "fake-arm.log"]
    logs = [p for p in logs if p.exists()]
    assert any(p.name.startswith("kaito-ctrl") and p.stat().st_size > 0 for p in logs), (
        "no controller logs to check"
    )
    secrets = _secret_values(sandbox)
    assert "service account token" in secrets and any("tls.key" in k for k in secrets), sorted(secrets)
    lines = 0
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            lines += 1
            for what, value in secrets.items():
                assert value not in line, f"{what} appears in {path.name}: {line[:200]}"
            assert "PRIVATE KEY" not in line, f"private key material in {path.name}"
            assert "Bearer " not in line, f"an Authorization header in {path.name}: {line[:200]}"
    assert lines > 50, f"only {lines} log lines: the check would prove little"
