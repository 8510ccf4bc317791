"""Locating (and if needed building) the control-plane binaries.

The binaries are built from their Go modules by ``hack/build-control-plane.sh`` and cached outside the
repository; ``KAITO_CTRL_BIN_DIR`` points at an already built directory and skips the script.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)


class BinariesUnavailable(RuntimeError):
    pass


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def build_script() -> Path:
    return repo_root() / "hack" / "build-control-plane.sh"


def _complete(bin_dir: Path) -> bool:
    return all((bin_dir / c).is_file() for c in COMPONENTS) and (bin_dir / "kwok-stages").is_dir()


def ensure_binaries(*, build: bool = True) -> Path:
    """Return the directory holding all control-plane binaries, running the build script when allowed."""
    explicit = os.environ.get("KAITO_CTRL_BIN_DIR")
    if explicit:
        path = Path(explicit)
        if not _complete(path):
            raise BinariesUnavailable(f"KAITO_CTRL_BIN_DIR={path} lacks some of {', '.join(COMPONENTS)}")
        return path
    script = build_script()
    if not script.is_file():
        raise BinariesUnavailable(f"{script} not found; set KAITO_CTRL_BIN_DIR to prebuilt binaries")
    if not build:
        raise BinariesUnavailable("control-plane binaries are not built; run `make binaries`")
    # The script prints progress on stderr (passed through) and the binary directory on stdout.
    out = subprocess.run(["bash", str(script)], check=True, stdout=subprocess.PIPE, text=True)
    path = Path(out.stdout.strip().splitlines()[-1])
    if not _complete(path):
        raise BinariesUnavailable(f"build script reported {path} but it is incomplete")
    return path


def read_versions(bin_dir: Path) -> dict[str, str]:
    versions: dict[str, str] = {}
    f = bin_dir / "VERSIONS"
    if f.is_file():
        for line in f.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                versions[k] = v
    return versions


# Karpenter's kwok provider lives in its own cache directory keyed by its version
# (``hack/build-karpenter.sh``), so adding it never invalidates the control-plane build.
KARPENTER_BINARY = "karpenter-kwok"


def karpenter_build_script() -> Path:
    return repo_root() / "hack" / "build-karpenter.sh"


def _karpenter_complete(path: Path) -> bool:
    return (path / KARPENTER_BINARY).is_file() and (path / "crds").is_dir()


def ensure_karpenter(*, build: bool = True) -> Path:
    """Return the directory holding the Karpenter kwok binary and the CRDs of the same module version.

    ``KAITO_CTRL_KARPENTER_DIR`` points at an already built directory and skips the script.
    """
    explicit = os.environ.get("KAITO_CTRL_KARPENTER_DIR")
    if explicit:
        path = Path(explicit)
        if not _karpenter_complete(path):
            raise BinariesUnavailable(f"KAITO_CTRL_KARPENTER_DIR={path} lacks {KARPENTER_BINARY} or crds/")
        return path
    script = karpenter_build_script()
    if not script.is_file():
        raise BinariesUnavailable(f"{script} not found; set KAITO_CTRL_KARPENTER_DIR to a prebuilt Karpenter")
    if not build:
        cache = Path(os.environ.get("KAITO_CTRL_CACHE", str(Path.home() / ".cache" / "kaito-ctrl")))
        built = sorted(
            (p for p in (cache / "bin").glob("karpenter-v*") if _karpenter_complete(p)),
            key=_version_key,
        )
        if built:
            return built[-1]
        raise BinariesUnavailable("Karpenter is not built; run `bash hack/build-karpenter.sh`")
    out = subprocess.run(["bash", str(script)], check=True, stdout=subprocess.PIPE, text=True)
    path = Path(out.stdout.strip().splitlines()[-1])
    if not _karpenter_complete(path):
        raise BinariesUnavailable(f"Karpenter build script reported {path} but it is incomplete")
    return path


def _version_key(path: Path) -> tuple[int, ...]:
    """karpenter-v1.15.0 -> (1, 15, 0): the newest build wins, v1.15 over v1.9."""
    parts = path.name.removeprefix("karpenter-v").split(".")
    return tuple(int(p) if p.isdigit() else 0 for p in parts)
