"""Fuzz of the admission path: random structural mutations of valid Workspaces (both API versions) created on
the real apiserver with kaito-ctrl's webhook registered and the Workspace controller running.

The only answers allowed are a clean accept, a schema refusal naming a field, or a webhook denial naming a
field: never a 5xx, a timeout, a webhook call that failed (the webhook crashed or answered garbage), or a
refusal that does not say which field. Then a sample of the admitted Workspaces must carry every condition
that applies with a reason, and a ``state``: admission let them in, so the controller must say what is going on.

``make test`` runs a reduced fuzz (``QUICK_EXAMPLES``); ``make chaos`` (``--chaos-full``) the long one
(``KAITO_FUZZ_EXAMPLES``, default ``FULL_EXAMPLES``), and appends its figures to ``$KAITO_CHAOS_REPORT``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import copy
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaito_ctrl.controllers.workspace.setup import setup
from kaito_ctrl.kube.client import KubeClient
from kaito_ctrl.kube.errors import ApiError, Conflict
from kaito_ctrl.kube.resources import CONFIGMAPS, NAMESPACES, WORKSPACES, WORKSPACES_V1ALPHA1
from kaito_ctrl.runtime.manager import Manager
from kaito_ctrl.settings import Settings
from kaito_ctrl.testing.controlplane import ControlPlane
from kaito_ctrl.webhook.certs import CertPolicy
from kaito_ctrl.webhook.registration import ClientConfig, WebhookRunner
from kaito_ctrl.webhook.server import WebhookServer
from tests.cases.invalid_workspaces import inference_ws, tuning_ws

pytestmark = pytest.mark.chaos

REPO = Path(__file__).resolve().parents[2]
QUICK_EXAMPLES = 400
FULL_EXAMPLES = 5000
SAMPLE = 20  # admitted Workspaces checked for conditions
T = TypeVar("T")

# A webhook denial: "... denied the request: invalid Workspace: <field>: ..."; a schema refusal:
# 'Workspace.kaito.sh "x" is invalid: <field>: ...' (several as "[<field>: ..., <field>: ...]").
WEBHOOK_DENIAL = re.compile(
    r"denied the request: invalid Workspace: (metadata\.annotations\[[^\]]+\]|[\w.\[\]/-]+):"
)
FIELD = re.compile(r"\b(resource|inference|tuning|metadata|ObjectMeta\.\w+|apiVersion|kind)\b")
SCHEMA_REFUSAL = re.compile(r'^Workspace\.kaito\.sh "[^"]*" is invalid: ')


@dataclass
class Stack:
    """The webhook and the controller on their own event loop thread; hypothesis drives them synchronously."""

    loop: asyncio.AbstractEventLoop
    kube: KubeClient
    namespace: str
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    admitted: list[str] = field(default_factory=list)
    seen: int = 0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane) -> Iterator[Stack]:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests/crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workspaces.kaito.sh")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-loop", daemon=True)
    thread.start()
    namespace = f"fuzz-{uuid.uuid4().hex[:8]}"

    async def start() -> tuple[KubeClient, WebhookRunner, Manager, list[asyncio.Task[Any]]]:
        kube = await KubeClient.from_kubeconfig(control_plane.kubeconfig, qps=500, burst=500)
        for ns in ("kaito-fuzz-webhook", namespace):
            with contextlib.suppress(Conflict):
                await kube.create(NAMESPACES, {"metadata": {"name": ns}})

        async def get_configmap(ns: str, name: str) -> dict[str, Any]:
            return await kube.get(CONFIGMAPS, name, ns)

        server = WebhookServer(
            "127.0.0.1", 0, keepalive_timeout=0.5, node_provisioner="nodeclaim", get_configmap=get_configmap
        )
        runner = WebhookRunner(
            kube,
            CertPolicy("kaito-ctrl-webhook", "kaito-fuzz-webhook"),
            server,
            ClientConfig(url_base="https://127.0.0.1:0"),
        )
        tasks = [asyncio.create_task(runner.run())]
        await asyncio.wait_for(runner.ready.wait(), 30)
        settings_ = Settings(
            watch_namespace=namespace, node_provisioner="nodeclaim", leader_elect=False, webhook=False
        )
        manager = Manager(kube, sync_timeout=30)
        setup(manager, kube, settings_)
        tasks.append(asyncio.create_task(manager.run()))
        return kube, runner, manager, tasks

    kube, _, manager, tasks = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    s = Stack(loop, kube, namespace)
    try:
        yield s
    finally:

        async def stop() -> None:
            manager.stop()
            tasks[0].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Leave nothing behind in the shared control plane: no controller runs to release the finalizers.
            for ws in await kube.list_all(WORKSPACES, namespace):
                with contextlib.suppress(ApiError):
                    await kube.merge_patch(
                        WORKSPACES, ws["metadata"]["name"], {"metadata": {"finalizers": None}}, namespace
                    )
            await kube.close()

        with contextlib.suppress(concurrent.futures.TimeoutError):
            s.run(stop(), 60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        for kind, name in (("validatingwebhookconfiguration", "kaito-ctrl-validating-webhook"),
                           ("mutatingwebhookconfiguration", "kaito-ctrl-mutating-webhook")):  # fmt: skip
            control_plane.kubectl("delete", kind, name, check=False)
        control_plane.kubectl("delete", "nodeclaims", "-l", f"kaito.sh/workspacenamespace={namespace}",
                              "--wait=false", check=False)  # fmt: skip
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# ---------------------------------------------------------------- the mutations
NASTY = [
    "", " ", "${jndi}", "a" * 64, "a" * 300, "UPPER", "-x", "x-", "a/b/c", "/k", "k/", "ünï", "\x00", "a b",
    "http://169.254.169.254/", "https://example.com/d.parquet", "Standard_NC12s_v3", "Standard_NC12s_v9",
    "phi-3-mini-4k-instruct", "phi-2", "vllm", "transformers", "private", "public", "lora", "QLoRA",
    "mig", "1g.10gb", "1.5", "-0.1", "0.5", "true", "r.io/img:1", "Bad Image", "kaito.sh/workspace",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(NASTY),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=70),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(
                st.sampled_from(
                    [
                        "name",
                        "image",
                        "key",
                        "operator",
                        "values",
                        "source",
                        "strength",
                        "urls",
                        "mode",
                        "count",
                    ]
                ),
                st.text(max_size=12),
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=8,
)
PATHS = [
    "metadata.annotations", "metadata.annotations.kaito.sh/runtime", "metadata.annotations.kaito.sh/node-image-family",
    "metadata.annotations.kaito.sh/bypass-resource-checks", "metadata.labels",
    "resource", "resource.count", "resource.instanceType", "resource.labelSelector",
    "resource.labelSelector.matchLabels", "resource.labelSelector.matchLabels.apps",
    "resource.labelSelector.matchExpressions", "resource.preferredNodes", "resource.partition",
    "inference", "inference.preset", "inference.preset.name", "inference.preset.accessMode",
    "inference.preset.presetOptions", "inference.preset.presetOptions.modelAccessSecret",
    "inference.preset.presetOptions.image", "inference.config", "inference.adapters", "inference.template",
    "tuning", "tuning.method", "tuning.config", "tuning.preset", "tuning.input", "tuning.input.urls",
    "tuning.input.image", "tuning.output", "tuning.output.image", "tuning.output.imagePushSecret",
]  # fmt: skip
DELETE = object()
mutation = st.tuples(st.sampled_from(PATHS), st.one_of(st.just(DELETE), values))
ADAPTER = st.fixed_dictionaries(
    {"source": st.fixed_dictionaries({"name": st.sampled_from(["a1", "a2", "Bad_Name", "x" * 60]),
                                      "image": st.sampled_from(["r.io/a:1", "Bad Image", ""])})},
    optional={"strength": st.sampled_from(["0.5", "1.0", "2", "x"])},
)  # fmt: skip


def _split(path: str) -> list[str]:
    # "metadata.annotations.kaito.sh/runtime": the annotation key keeps its dots.
    for prefix in ("metadata.annotations.", "metadata.labels."):
        if path.startswith(prefix):
            return [*prefix.rstrip(".").split("."), path[len(prefix) :]]
    return path.split(".")


def mutate(obj: dict[str, Any], path: str, value: Any) -> None:
    keys = _split(path)
    cur: Any = obj
    for k in keys[:-1]:
        if not isinstance(cur, dict):
            return
        if not isinstance(cur.get(k), dict):
            if value is DELETE:
                return
            cur[k] = {}
        cur = cur[k]
    if not isinstance(cur, dict):
        return
    if value is DELETE:
        cur.pop(keys[-1], None)
    else:
        cur[keys[-1]] = copy.deepcopy(value)


workspaces = st.tuples(
    st.sampled_from(["v1alpha1", "v1beta1"]),
    st.sampled_from(["inference", "tuning"]),
    st.lists(mutation, min_size=1, max_size=4),
    st.lists(ADAPTER, max_size=3),
    st.booleans(),
)


def _classify(stack: Stack, version: str, error: ApiError) -> str:
    """The refusal's class, or an AssertionError saying why it is not an allowed answer."""
    message = error.message
    assert error.status < 500, f"server error {error.status}: {message}"
    assert "failed calling webhook" not in message, f"the webhook failed: {message}"
    if WEBHOOK_DENIAL.search(message):
        assert error.status in (400, 403, 422), (error.status, message)
        return f"{version}:webhook-denial"
    if SCHEMA_REFUSAL.search(message) or error.status == 400:
        # 400: the body could not even be decoded as a Workspace (a wrong type where the schema is strict);
        # the apiserver's message names the field in its JSON path.
        assert error.status in (400, 422), (error.status, message)
        detail = re.sub(r'^Workspace\.kaito\.sh "[^"]*" is invalid: ', "", message)
        assert FIELD.search(detail), f"no field named: {message}"
        return f"{version}:schema-refusal"
    raise AssertionError(f"a refusal that names no field ({error.status} {error.reason}): {message}")


def _fuzz(stack: Stack, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(workspaces)
    def one(case: tuple[str, str, list[tuple[str, Any]], list[dict[str, Any]], bool]) -> None:
        version, kind, mutations, adapters, with_adapters = case
        obj = inference_ws() if kind == "inference" else tuning_ws()
        obj["apiVersion"] = f"kaito.sh/{version}"
        stack.seen += 1
        name = f"fz{stack.seen}-{uuid.uuid4().hex[:6]}"
        obj["metadata"]["name"] = name
        if with_adapters and kind == "inference":
            obj["inference"]["adapters"] = adapters
        for path, value in mutations:
            mutate(obj, path, value)
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        obj["metadata"]["name"] = name
        res = WORKSPACES_V1ALPHA1 if version == "v1alpha1" else WORKSPACES
        started = time.monotonic()
        try:
            stack.run(stack.kube.create(res, obj, stack.namespace), timeout=30)
        except concurrent.futures.TimeoutError as e:
            raise AssertionError(f"admission did not answer within 30 s: {json.dumps(obj)[:500]}") from e
        except ApiError as e:
            if os.environ.get("KAITO_FUZZ_DEBUG"):
                print("REFUSAL", e.status, e.message[:300])
            try:
                stack.counts[_classify(stack, version, e)] += 1
            except AssertionError as bad:
                raise AssertionError(f"{bad}\nobject: {json.dumps(obj, default=str)[:800]}") from None
            return
        finally:
            stack.counts["seconds"] += time.monotonic() - started
        stack.counts[f"{version}:accepted"] += 1
        stack.admitted.append(name)

    one()


def test_fuzzed_workspaces_get_a_clean_answer(stack: Stack, request: pytest.FixtureRequest) -> None:
    full = bool(request.config.getoption("--chaos-full", default=False))
    examples = int(os.environ.get("KAITO_FUZZ_EXAMPLES", FULL_EXAMPLES)) if full else QUICK_EXAMPLES
    t0 = time.monotonic()
    _fuzz(stack, examples)
    took = time.monotonic() - t0
    counts = dict(stack.counts)
    print(f"admission fuzz: {stack.seen} Workspaces in {took:.1f} s: {counts}")
    for version in ("v1alpha1", "v1beta1"):
        answered = sum(v for k, v in counts.items() if k.startswith(version))
        assert answered, f"no {version} case ran"
    report = os.environ.get("KAITO_CHAOS_REPORT")
    if report:
        with Path(report).open("a") as f:
            f.write(json.dumps({"test": "admission-fuzz", "examples": stack.seen, "converged_s": round(took, 1),
                                "bad_answers": 0, **{k: round(v, 1) for k, v in counts.items()}}) + "\n")  # fmt: skip


def test_admitted_fuzzed_workspaces_get_conditions(stack: Stack) -> None:
    """A sample of what the fuzz admitted (plus the unmutated bases) reaches a Workspace whose conditions
    say what is happening."""
    for version, res in (("v1alpha1", WORKSPACES_V1ALPHA1), ("v1beta1", WORKSPACES)):
        for base in (inference_ws(), tuning_ws()):
            base["apiVersion"] = f"kaito.sh/{version}"
            base["metadata"]["name"] = f"base-{version}-{'inf' if 'inference' in base else 'tun'}"
            with contextlib.suppress(Conflict):
                stack.run(stack.kube.create(res, base, stack.namespace))
            stack.admitted.append(base["metadata"]["name"])
    sample = stack.admitted[-4:] + stack.admitted[: max(0, SAMPLE - 4)]
    deadline = time.monotonic() + 60
    missing: dict[str, Any] = {}
    while time.monotonic() < deadline:
        missing = {}
        for name in sample:
            obj = stack.run(stack.kube.get(WORKSPACES, name, stack.namespace))
            conditions = (obj.get("status") or {}).get("conditions") or []
            types = {c["type"] for c in conditions}
            expected = {"ResourceReady", "NodeClaimReady", "NodesReady", "WorkspaceSucceeded", "WorkspaceReady",
                        "JobStarted" if obj.get("tuning") is not None else "InferenceReady"}  # fmt: skip
            if (
                not expected <= types
                or not all(c.get("reason") for c in conditions)
                or not obj["status"].get("state")
            ):
                missing[name] = sorted(expected - types)
            else:
                # Admitted means nothing the user typed is refused later: no write of it was rejected.
                rejected = [
                    c for c in conditions if c["reason"].endswith("Rejected") or c["reason"] == "Forbidden"
                ]
                assert not rejected, (
                    name,
                    rejected,
                    obj.get("resource"),
                    obj.get("inference") or obj.get("tuning"),
                )
        if not missing:
            return
        time.sleep(0.5)  # polling interval of a deadline-bounded wait (the loop runs on its own thread)
    raise AssertionError(f"admitted Workspaces without full conditions: {missing}")


def test_configmap_references_are_checked_live(stack: Stack) -> None:
    """Through the real apiserver: a new Workspace naming a ConfigMap that does not exist is refused naming
    the field; once it exists (with Kaito's key), the same Workspace is admitted."""
    ws = inference_ws("cfgref")
    ws["inference"]["config"] = "cfgref-params"
    with pytest.raises(ApiError) as refused:
        stack.run(stack.kube.create(WORKSPACES, ws, stack.namespace))
    assert "inference.config" in refused.value.message and "not found" in refused.value.message
    cm = {"metadata": {"name": "cfgref-params"}, "data": {"inference_config.yaml": "vllm: {}\n"}}
    stack.run(stack.kube.create(CONFIGMAPS, cm, stack.namespace))
    created = stack.run(stack.kube.create(WORKSPACES, ws, stack.namespace))
    assert created["inference"]["config"] == "cfgref-params"
