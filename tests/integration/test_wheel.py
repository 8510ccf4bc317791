"""The built wheel works on its own: installed into a fresh virtual environment outside the checkout, with no
environment variable pointing back at it, `kaito-ctrl render` and `kaito-ctrl plan` work."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = """\
apiVersion: kaito.sh/v1alpha1
kind: Workspace
metadata:
  name: workspace-phi-3-mini
resource:
  instanceType: "Standard_NC12s_v3"
  labelSelector:
    matchLabels:
      apps: phi-3
inference:
  preset:
    name: phi-3-mini-4k-instruct
"""


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_installed_outside_the_checkout_renders_and_plans(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAITO_", "PYTHON", "VIRTUAL_ENV"))}
    dist = tmp_path / "dist"
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-w",
            str(dist),
            str(REPO),
        ],
        tmp_path,
        env,
    )
    assert built.returncode == 0, built.stderr
    wheels = list(dist.glob("kaito_ctrl-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    for template in (REPO / "templates").glob("*.j2"):
        assert f"kaito_ctrl/_data/templates/{template.name}" in names
    for crd in (REPO / "manifests" / "crds").glob("*.yaml"):
        assert f"kaito_ctrl/_data/manifests/crds/{crd.name}" in names

    home = tmp_path / "elsewhere"
    venv.EnvBuilder(with_pip=True).create(home / "venv")
    py = home / "venv" / "bin" / "python"
    installed = run([str(py), "-m", "pip", "install", "-q", str(wheels[0])], home, env)
    assert installed.returncode == 0, installed.stderr
    (home / "ws.yaml").write_text(WORKSPACE)
    cli = str(home / "venv" / "bin" / "kaito-ctrl")

    # The installed package, not the checkout, is what runs.
    where = run([str(py), "-c", "import kaito_ctrl.render as r; print(r.templates_dir())"], home, env)
    assert where.returncode == 0 and str(REPO) not in where.stdout, where.stdout + where.stderr

    rendered = run([cli, "render", "-f", "ws.yaml"], home, env)
    assert rendered.returncode == 0, rendered.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered.stdout) if d]
    assert "NodeClaim" in kinds and "Service" in kinds and "Deployment" in kinds

    planned = run([cli, "plan", "-f", "ws.yaml"], home, env)
    assert planned.returncode == 0, planned.stderr
    assert "workspace-phi-3-mini: valid" in planned.stdout


def test_editable_install_prints_no_warning_from_the_project_metadata(tmp_path: Path) -> None:
    """`make install` is an editable install: setuptools must find nothing in pyproject.toml or the layout to warn
    about (license tables, editable-layout banners)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAITO_", "PYTHON", "VIRTUAL_ENV"))}
    venv.EnvBuilder(with_pip=True).create(tmp_path / "venv")
    py = tmp_path / "venv" / "bin" / "python"
    # As `make install` does: a current pip shows the build backend's warnings, an old one hides them.
    upgraded = run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], tmp_path, env)
    assert upgraded.returncode == 0, upgraded.stderr
    res = run([str(py), "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO)], tmp_path, env)
    assert res.returncode == 0, res.stderr
    noise = [
        line
        for line in (res.stdout + res.stderr).splitlines()
        if any(w in line for w in ("Warning", "warning", "!!", "Deprecat"))
    ]
    assert not noise, "\n".join(noise)
