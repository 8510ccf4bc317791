"""Shared fixtures: one real control plane per test session, a fresh namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaito_ctrl.testing.controlplane import ControlPlane, ControlPlaneOptions

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(ControlPlaneOptions(workdir=tmp_path_factory.mktemp("controlplane")))
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-full", action="store_true", help="run the fault matrix with all its seeds (make chaos)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``chaos_seed``: a few seeds in ``make test``, the full matrix (KAITO_CHAOS_SEEDS, default 50) with
    ``--chaos-full``."""
    if "chaos_seed" in metafunc.fixturenames:
        full = metafunc.config.getoption("--chaos-full", default=False)
        # A module may size its own matrix (CHAOS_SEEDS_FULL / CHAOS_SEEDS_QUICK) when one run is long.
        full_default = getattr(metafunc.module, "CHAOS_SEEDS_FULL", 50)
        quick = getattr(metafunc.module, "CHAOS_SEEDS_QUICK", 2)
        count = int(os.environ.get("KAITO_CHAOS_SEEDS", str(full_default))) if full else quick
        metafunc.parametrize("chaos_seed", range(count), ids=[f"seed{s}" for s in range(count)])
