"""A template Workspace's pods tolerate what Kaito's do: the user's tolerations first, then Kaito's defaults
(v0.3.2 GenerateDeploymentManifestWithPodTemplate, 0.12 GenerateManifestWithPodTemplate append them), so they
can run on a provisioned node, which carries the sku=gpu taint whatever its size."""

from __future__ import annotations

from kaito_ctrl.controllers.workspace.inference_pod import tolerations
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.workload import render_template_workload

USER = {"key": "team", "operator": "Equal", "value": "a", "effect": "NoSchedule"}


def _pod(user: list[dict[str, str]] | None) -> dict[str, object]:
    spec: dict[str, object] = {
        "containers": [{"name": "c", "image": "r.io/app:1", "command": ["/bin/sleep", "10000"]}]
    }
    if user is not None:
        spec["tolerations"] = user
    ws = {
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": "custom", "namespace": "ns", "uid": "u-1"},
        "resource": {"instanceType": "Standard_D4s_v3", "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {"template": {"spec": spec}},
    }  # fmt: skip
    objs = render_template_workload(WorkspaceSpec(ws), node_requirements=[])
    dep = next(o for o in objs if o["kind"] == "Deployment")
    return dict(dep["spec"]["template"]["spec"])


def test_kaitos_default_tolerations_are_appended_to_the_users() -> None:
    assert _pod(None)["tolerations"] == tolerations()
    assert _pod([USER])["tolerations"] == [USER, *tolerations()]
    gpu = tolerations()[0]
    assert _pod([gpu])["tolerations"] == tolerations(), "a default the user already has is not repeated"
    assert any(t.get("key") == "sku" and t.get("value") == "gpu" for t in tolerations())
