"""Toxiproxy (built from its Go module by ``hack/build-toxiproxy.sh``) as a test fixture: a TCP proxy between
kaito-ctrl and the real kube-apiserver whose link can be reset, black-holed or slowed at the wire, through its
HTTP API. Faults are what a socket does, not what a fake raises."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from kaito_ctrl.testing.binaries import BinariesUnavailable, repo_root
from kaito_ctrl.testing.controlplane import free_port

BINARY = "toxiproxy-server"


def ensure_toxiproxy() -> Path:
    """The toxiproxy-server binary, built (or reused from the cache) by the build script."""
    script = repo_root() / "hack" / "build-toxiproxy.sh"
    if not script.is_file():
        raise BinariesUnavailable(f"{script} not found")
    out = subprocess.run(["bash", str(script)], check=True, stdout=subprocess.PIPE, text=True)
    binary = Path(out.stdout.strip().splitlines()[-1]) / BINARY
    if not binary.is_file():
        raise BinariesUnavailable(f"{binary} was not built")
    return binary


class Toxiproxy:
    """One toxiproxy-server process on loopback and the proxies it runs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        binary = ensure_toxiproxy()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "toxiproxy.log").open("ab")
        self._process = subprocess.Popen(
            [str(binary), "-host", "127.0.0.1", "-port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "warn"},
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(f"toxiproxy-server exited with {self._process.returncode}")
                try:
                    self._call("GET", "/proxies")
                    return
                except OSError:
                    time.sleep(0.1)  # polling interval of a deadline-bounded wait for the API to listen
            raise TimeoutError("toxiproxy-server did not answer in time")
        except BaseException:
            self.stop()  # never leave the process behind a failed start
            raise

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (the loopback API of our own process)
            self.api + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        # Longer than the server's own 25 s handler timeout, after which it answers 503: a removal that waits
        # for the data a toxic holds takes seconds under load.
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def proxy(self, name: str, upstream: str) -> str:
        """Create a proxy to ``upstream`` (host:port); returns its listen address (127.0.0.1:port)."""
        listen = f"127.0.0.1:{free_port()}"
        self._call(
            "POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True}
        )
        return listen

    def add_toxic(
        self, proxy: str, kind: str, *, stream: str = "downstream", toxicity: float = 1.0, **attributes: Any
    ) -> str:
        """Add a toxic (``reset_peer``, ``timeout``, ``latency``, ``limit_data``, ...); returns its name."""
        name = f"{kind}_{stream}"
        self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {"name": name, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes},
        )
        return name

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def clear(self, proxy: str) -> None:
        for toxic in self._call("GET", f"/proxies/{proxy}/toxics") or []:
            self.remove_toxic(proxy, toxic["name"])
