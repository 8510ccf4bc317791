"""The renderer remembers its last renders: the same inputs give equal objects without building them from YAML
again, every call gets objects of its own, and other inputs render anew."""

from __future__ import annotations

from typing import Any

import pytest

from kaito_ctrl import render as R
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.workload import render_inference


def _ws(name: str) -> WorkspaceSpec:
    return WorkspaceSpec({
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}"},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    })  # fmt: skip


def test_same_inputs_reuse_the_render_and_each_call_owns_its_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    R._memo.clear()
    built: list[str] = []
    load_all = R.yaml.load_all

    def counting(text: str, Loader: Any) -> Any:
        built.append(text)
        return load_all(text, Loader=Loader)

    monkeypatch.setattr(R.yaml, "load_all", counting)
    first = render_inference(_ws("a"), nodes=1, node_requirements=[], registry="r.io")
    builds = len(built)
    assert builds >= 2, "the Service and the workload are rendered"
    first[1]["spec"]["replicas"] = 99  # a caller changing its objects changes nobody else's
    second = render_inference(_ws("a"), nodes=1, node_requirements=[], registry="r.io")
    assert len(built) == builds, "no YAML built again for the same inputs"
    third = render_inference(_ws("a"), nodes=1, node_requirements=[], registry="r.io")
    assert second == third and second[1]["spec"]["replicas"] != 99 and second is not third
    other = render_inference(_ws("b"), nodes=1, node_requirements=[], registry="r.io")
    assert len(built) == 2 * builds and other[1]["metadata"]["name"] == "b"


def test_the_memo_is_bounded() -> None:
    R._memo.clear()
    for i in range(R.MEMO_SIZE // 2 + 10):
        render_inference(_ws(f"w{i}"), nodes=1, node_requirements=[], registry="r.io")
    assert len(R._memo) == R.MEMO_SIZE
