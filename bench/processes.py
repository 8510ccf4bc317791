"""Controllers under benchmark as processes of their own: started with a log file, watched for an early exit
(named with the tail of the log), stopped with SIGTERM and killed after a bound; their CPU time (user+sys) and
peak resident set read from /proc, their client's requests from their /metrics endpoint.

A process started here is also killed by the kernel if the benchmark dies without stopping it
(PR_SET_PDEATHSIG), so an interrupted run leaves no controller behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from prometheus_client.parser import text_string_to_metric_families

CLK_TCK = os.sysconf("SC_CLK_TCK")
STOP_TIMEOUT = 20.0  # after SIGTERM, before SIGKILL
LOG_TAIL_LINES = 15
_PR_SET_PDEATHSIG = 1
# Loaded in the parent: between fork and exec the child only calls prctl.
_LIBC = ctypes.CDLL(None, use_errno=True)

log = structlog.get_logger("bench.processes")


def _die_with_parent() -> None:
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # proc(5): utime and stime are fields 14 and 15; the command name (field 2, in parentheses) may hold spaces,
    # so count from the field after it (state, field 3).
    after_comm = stat[stat.rindex(")") + 1 :].split()
    return (int(after_comm[11]) + int(after_comm[12])) / CLK_TCK


def _status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024  # kB
    raise ValueError(f"no {field} in /proc/{pid}/status")


def peak_rss(pid: int) -> int:
    """The process's peak resident set size in bytes (VmHWM in /proc/<pid>/status)."""
    return _status_bytes(pid, "VmHWM")


def current_rss(pid: int) -> int:
    """The process's resident set size now, in bytes (VmRSS)."""
    return _status_bytes(pid, "VmRSS")


async def request_counts(metrics_url: str) -> collections.Counter[str]:
    """A kaito-ctrl process's HTTP requests to the apiserver so far by method (rest_client_requests_total, every
    attempt counted; watch streams left out)."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(metrics_url) as resp:
        resp.raise_for_status()
        text = await resp.text()
    counts: collections.Counter[str] = collections.Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "rest_client_requests":
            continue
        for sample in family.samples:
            method = sample.labels.get("method", "?")
            if sample.name == "rest_client_requests_total" and method != "WATCH":
                counts[method] += int(sample.value)
    return counts


class ControllerProcess:
    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"(log unreadable: {e})"

    def exited(self) -> str | None:
        """Why the process has ended (its exit code and the tail of its log), or None while it runs."""
        if self.proc.returncode is None:
            return None
        return f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}"

    def cpu_seconds(self) -> float:
        try:
            return cpu_seconds(self.pid)
        except OSError as e:
            raise RuntimeError(self.exited() or f"{self.name}: /proc/{self.pid}/stat: {e}") from e

    def peak_rss(self) -> int:
        try:
            return peak_rss(self.pid)
        except OSError as e:
            raise RuntimeError(self.exited() or f"{self.name}: /proc/{self.pid}/status: {e}") from e

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds; always reaped."""
        if self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            log.warning("process ignored SIGTERM; killed", process=self.name, timeout=timeout)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        if self.proc.returncode not in (0, -signal.SIGTERM):
            log.warning("process exited uncleanly", process=self.name, code=self.proc.returncode,
                        log_tail=self.log_tail(5))  # fmt: skip


@contextlib.asynccontextmanager
async def started(
    name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path
) -> AsyncIterator[ControllerProcess]:
    """Start ``argv`` with stdout and stderr to ``log_path``; stop it on leaving the block, however left."""
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(cwd), preexec_fn=_die_with_parent,
        )  # fmt: skip
    process = ControllerProcess(name, proc, log_path)
    try:
        yield process
    finally:
        await process.stop()


def on_bench_cluster(options: Any, run: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """``run()`` against the cluster of ``KAITO_BENCH_KUBECONFIG`` (run_all's shared one), or, when a module runs
    on its own, against a control plane started with ``options`` (a ControlPlaneOptions) for the call."""
    if os.environ.get("KAITO_BENCH_KUBECONFIG"):
        return run()
    from kaito_ctrl.testing.controlplane import ControlPlane

    with ControlPlane(options) as cp:
        os.environ["KAITO_BENCH_KUBECONFIG"] = cp.kubeconfig
        try:
            return run()
        finally:
            os.environ.pop("KAITO_BENCH_KUBECONFIG", None)
