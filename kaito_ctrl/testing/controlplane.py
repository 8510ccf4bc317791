"""A real local Kubernetes control plane run as processes: etcd, kube-apiserver and, optionally,
kube-controller-manager, kube-scheduler and kwok (simulated GPU nodes).

Used by tests, e2e, benchmarks and the sandbox. Every address is on loopback. Children get a
parent-death signal so that nothing is left behind even if the Python process is killed, and
:meth:`ControlPlane.stop` stops them in the safe order (apiserver before etcd) with SIGKILL after a
deadline.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from kaito_ctrl import pki
from kaito_ctrl.testing import kwokextras
from kaito_ctrl.testing.binaries import ensure_binaries
from kaito_ctrl.testing.gpunodes import DEFAULT_GPU_NODES, GpuNodeSpec, gpu_node_manifest

log = structlog.get_logger(__name__)

SERVICE_CIDR = "10.0.0.0/24"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGKILL us when the parent dies,
    # so a killed test run leaves no etcd/apiserver behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class KubectlError(RuntimeError):
    pass


@dataclass
class ControlPlaneOptions:
    controller_manager: bool = True
    scheduler: bool = True
    kwok: bool = True
    gpu_nodes: tuple[GpuNodeSpec, ...] = DEFAULT_GPU_NODES
    workdir: Path | None = None
    bin_dir: Path | None = None
    ready_timeout: float = 90.0
    extra_apiserver_flags: tuple[str, ...] = ()
    # Write the apiserver's audit log (every request at Metadata level: user, user agent, verb, object, code)
    # to ``ControlPlane.audit_log``, so tests can prove who wrote what and when from the server's own record.
    audit: bool = False
    # kwok's kubelet server answers port-forward and logs for the pods the sandbox points at local processes
    # (kwok PortForward and Logs objects): its CRDs are installed and the apiserver reaches the "kubelet" at the
    # Node's InternalIP (127.0.0.1) over TLS it verifies.
    kwok_debugging: bool = False


@dataclass
class _Proc:
    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None


@dataclass
class ControlPlane:
    options: ControlPlaneOptions = field(default_factory=ControlPlaneOptions)

    def __post_init__(self) -> None:
        self.bin_dir: Path = self.options.bin_dir or ensure_binaries()
        self._own_workdir = self.options.workdir is None
        self.workdir: Path = self.options.workdir or Path(tempfile.mkdtemp(prefix="kaito-cp-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki_dir = self.workdir / "pki"
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubeconfig = str(self.workdir / "admin.kubeconfig")
        self.ca_file = str(self.pki_dir / "ca.crt")
        self._procs: dict[str, _Proc] = {}
        self._lock = threading.Lock()
        self._started = False

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        self._write_pki_and_kubeconfigs()
        atexit.register(self.stop)
        self._start_etcd()
        self._start_apiserver()
        self.wait_ready()
        if self.options.controller_manager:
            self._start("kube-controller-manager", self._kcm_args())
        if self.options.scheduler:
            self._start("kube-scheduler", self._scheduler_args())
        if self.options.kwok:
            if self.options.kwok_debugging:
                self.apply_objects(kwokextras.debugging_crds())
                for crd in kwokextras.debugging_crds():
                    self.kubectl(
                        "wait",
                        "--for=condition=Established",
                        "--timeout=60s",
                        f"crd/{crd['metadata']['name']}",
                    )
            self._start("kwok", self._kwok_args())
            for spec in self.options.gpu_nodes:
                self.add_gpu_node(spec)
        self._started = True
        log.info("control plane up", server=self.server, seconds=round(time.monotonic() - t0, 2))
        return self

    def stop(self) -> None:
        """Stop everything: apiserver first (it hangs if etcd goes first), then the rest, etcd last."""
        with self._lock:
            order = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "etcd"]
            for name in order + [n for n in self._procs if n not in order]:
                self._stop_proc(name)
            self._procs.clear()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._own_workdir and os.environ.get("KAITO_KEEP_CONTROLPLANE_DIR") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> dict[str, int]:
        return {n: p.popen.pid for n, p in self._procs.items() if p.popen and p.popen.poll() is None}

    def restart_apiserver(self, *, down_seconds: float = 0.0, during_outage: Any = None) -> None:
        """Stop and start kube-apiserver (etcd keeps the data). ``during_outage`` runs while it is down."""
        self._stop_proc("kube-apiserver")
        if during_outage is not None:
            during_outage()
        if down_seconds:
            time.sleep(down_seconds)  # a deliberate outage length, not synchronisation
        self._start_apiserver()
        self.wait_ready()
        self.revive()

    def revive(self) -> list[str]:
        """Start again the components that exited (as a kubelet restarts static pods): kube-controller-manager
        gives up for good when the apiserver vanishes while it is still starting its controllers."""
        revived = []
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            proc = self._procs.get(name)
            if proc is not None and proc.popen is not None and proc.popen.poll() is not None:
                self._start(name, proc.args)
                revived.append(name)
        return revived

    def stop_apiserver(self) -> None:
        self._stop_proc("kube-apiserver")

    def start_apiserver(self) -> None:
        self._start_apiserver()
        self.wait_ready()

    # ---------------------------------------------------------------- etcd helpers
    def etcd_request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.etcd_port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback etcd
            return dict(json.loads(resp.read()))

    def etcd_revision(self) -> int:
        out = self.etcd_request("/v3/kv/range", {"key": base64.b64encode(b"/").decode(), "limit": 1})
        return int(out["header"]["revision"])

    def compact_etcd(self) -> int:
        """Compact etcd to its current revision: a watch or list from an older resourceVersion gets 410."""
        rev = self.etcd_revision()
        self.etcd_request("/v3/kv/compaction", {"revision": rev, "physical": True})
        return rev

    # ---------------------------------------------------------------- kubectl and objects
    def kubectl(
        self, *args: str, input: str | bytes | None = None, check: bool = True, timeout: float = 120
    ) -> str:
        data = input.encode() if isinstance(input, str) else input
        res = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", self.kubeconfig, *args],
            input=data,
            capture_output=True,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} exited {res.returncode}: {res.stderr.decode().strip()}"
            )
        return res.stdout.decode() + (res.stderr.decode() if not check else "")

    def apply_objects(self, objects: Iterable[dict[str, Any]]) -> None:
        docs = "\n".join(json.dumps(o) for o in objects)
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=docs)

    def add_gpu_node(self, spec: GpuNodeSpec | str, **kwargs: Any) -> dict[str, Any]:
        if isinstance(spec, str):
            spec = GpuNodeSpec(spec, **kwargs)
        node = gpu_node_manifest(spec)
        # Created with status so capacity (nvidia.com/gpu) is there from the start; kwok then keeps it Ready.
        self.kubectl("create", "-f", "-", input=json.dumps(node))
        return node

    # ---------------------------------------------------------------- readiness
    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return ctx

    def wait_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.options.ready_timeout)
        ctx = self.ssl_context()
        last = ""
        while time.monotonic() < deadline:
            proc = self._procs.get("kube-apiserver")
            if proc and proc.popen and proc.popen.poll() is not None:
                raise RuntimeError(f"kube-apiserver exited: {self.log_tail('kube-apiserver')}")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=3) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.2)  # polling interval of a deadline-bounded wait
        raise TimeoutError(
            f"kube-apiserver not ready after timeout ({last}): {self.log_tail('kube-apiserver')}"
        )

    def log_tail(self, name: str, lines: int = 30) -> str:
        p = self.workdir / "logs" / f"{name}.log"
        if not p.exists():
            return ""
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:])

    # ---------------------------------------------------------------- internals
    def _write_pki_and_kubeconfigs(self) -> None:
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        ca = pki.make_ca()
        pki.write_pair(ca, self.pki_dir, "ca")
        serving = pki.issue(
            ca,
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local"),
            ip_addresses=("127.0.0.1", "10.0.0.1"),
            server=True,
        )  # fmt: skip
        pki.write_pair(serving, self.pki_dir, "apiserver")
        admin = pki.issue(ca, "kaito-admin", organization="system:masters", client=True)
        pki.write_pair(admin, self.pki_dir, "admin")
        # kwok's kubelet server (port-forward, logs) at the Nodes' InternalIP.
        kubelet = pki.issue(ca, "kwok-kubelet", ip_addresses=("127.0.0.1",), server=True)
        pki.write_pair(kubelet, self.pki_dir, "kubelet")
        kubelet_client = pki.issue(ca, "kube-apiserver-kubelet-client", client=True)
        pki.write_pair(kubelet_client, self.pki_dir, "kubelet-client")
        for user in ("system:kube-controller-manager", "system:kube-scheduler", "kwok"):
            org = "system:masters" if user == "kwok" else None
            pair = pki.issue(ca, user, organization=org, client=True)
            stem = user.split(":")[-1]
            pki.write_pair(pair, self.pki_dir, stem)
            self._write_kubeconfig(self.workdir / f"{stem}.kubeconfig", stem)
        sa_key = self.pki_dir / "sa.key"
        sa_key.write_bytes(pki.make_service_account_key())
        sa_key.chmod(0o600)
        self._write_kubeconfig(Path(self.kubeconfig), "admin")

    def _write_kubeconfig(self, path: Path, stem: str) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kaito-local",
                    "cluster": {"server": self.server, "certificate-authority": self.ca_file},
                }
            ],
            "users": [
                {
                    "name": stem,
                    "user": {
                        "client-certificate": str(self.pki_dir / f"{stem}.crt"),
                        "client-key": str(self.pki_dir / f"{stem}.key"),
                    },
                }
            ],
            "contexts": [{"name": "kaito-local", "context": {"cluster": "kaito-local", "user": stem}}],
            "current-context": "kaito-local",
        }
        path.write_text(json.dumps(cfg, indent=2))
        path.chmod(0o600)

    def _start(self, name: str, args: list[str]) -> None:
        log_path = self.workdir / "logs" / f"{name}.log"
        proc = _Proc(name, args, log_path)
        out = log_path.open("ab")
        preexec = _die_with_parent if threading.current_thread() is threading.main_thread() else None
        proc.popen = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=preexec
        )
        out.close()
        self._procs[name] = proc

    def _stop_proc(self, name: str, timeout: float = 15.0) -> None:
        proc = self._procs.get(name)
        if not proc or not proc.popen or proc.popen.poll() is not None:
            return
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(timeout=10)

    def _start_etcd(self) -> None:
        data = self.workdir / "etcd"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self._start(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={data}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.etcd_revision()
                return
            time.sleep(0.1)  # polling interval of a deadline-bounded wait
        raise TimeoutError(f"etcd not ready: {self.log_tail('etcd')}")

    def _start_apiserver(self) -> None:
        p = self.pki_dir
        self._start(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.key'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                *self._audit_flags(),
                *self._kubelet_flags(),
                *self.options.extra_apiserver_flags,
            ],
        )

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _audit_flags(self) -> list[str]:
        if not self.options.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"
        )
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=0",
        ]

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log's events so far (empty when auditing is off), oldest first."""
        if not self.audit_log.exists():
            return []
        events = []
        for line in self.audit_log.read_text().splitlines():
            if line.strip():
                events.append(dict(json.loads(line)))
        return events

    def _kubelet_flags(self) -> list[str]:
        """How the apiserver reaches kwok's kubelet server: by the Node's InternalIP (never its host name, which
        does not resolve here), verifying the serving certificate with the cluster CA."""
        return [
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-certificate-authority={self.ca_file}",
            f"--kubelet-client-certificate={self.pki_dir / 'kubelet-client.crt'}",
            f"--kubelet-client-key={self.pki_dir / 'kubelet-client.key'}",
        ]

    def _kcm_args(self) -> list[str]:
        kc = str(self.workdir / "kube-controller-manager.kubeconfig")
        return [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--service-account-private-key-file={self.pki_dir / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
        ]

    def _scheduler_args(self) -> list[str]:
        kc = str(self.workdir / "kube-scheduler.kubeconfig")
        return [
            str(self.bin_dir / "kube-scheduler"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
        ]

    def _kwok_args(self) -> list[str]:
        stages = sorted((self.bin_dir / "kwok-stages").glob("*.yaml"))
        config = self.workdir / "kwok-stages.yaml"
        config.write_text(kwokextras.compose_stages([s.read_text() for s in stages]))
        port = free_port()
        debugging = (
            [
                f"--enable-crds={','.join(kwokextras.DEBUG_KINDS)}",
                f"--tls-cert-file={self.pki_dir / 'kubelet.crt'}",
                f"--tls-private-key-file={self.pki_dir / 'kubelet.key'}",
            ]
            if self.options.kwok_debugging
            else []
        )
        return [
            str(self.bin_dir / "kwok"),
            f"--kubeconfig={self.workdir / 'kwok.kubeconfig'}",
            f"--config={config}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1",
            f"--node-port={port}",
            f"--server-address=127.0.0.1:{port}",
            "--cidr=127.10.0.1/16",
            # Node Leases, as a kubelet keeps them: without them the shipped heartbeat stage (every 10-20 min)
            # is all kube-controller-manager sees, so it marks each Node NotReady (and its pods unready) ~50 s in.
            "--node-lease-duration-seconds=40",
            *debugging,
        ]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] != "Z"
    return False
