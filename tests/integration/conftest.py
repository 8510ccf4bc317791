"""Fixtures shared by the integration tests that inject faults at the wire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kaito_ctrl.testing.toxiproxy import Toxiproxy


@pytest.fixture(scope="module")
def toxiproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Toxiproxy]:
    """A Toxiproxy server (built from its Go module) for the module's tests; each test makes its own proxies."""
    proxy = Toxiproxy(tmp_path_factory.mktemp("toxiproxy"))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
