"""The issue's silent failure, replayed as a user: the ``badlabel`` Workspace is refused at ``kubectl apply``
naming the label, and an unknown instance type is admitted with a warning that kubectl prints."""

from __future__ import annotations

from e2e.conftest import Sandbox, wait_for

BADLABEL = """
apiVersion: kaito.sh/v1alpha1
kind: Workspace
metadata: {name: badlabel}
resource:
  instanceType: "Standard_NC6s_v3"
  labelSelector: {matchLabels: {apps: "${jndi}"}}
inference: {preset: {name: phi-3-mini-4k-instruct}}
"""


def test_badlabel_is_refused_at_apply_naming_the_label(sandbox: Sandbox, e2e_namespace: str) -> None:
    def refused() -> str:
        out = sandbox.kubectl("apply", "-n", e2e_namespace, "-f", "-", input=BADLABEL, check=False)
        return out if "denied the request" in out else ""

    message = wait_for(refused, 60, "the webhook's refusal")
    assert "resource.labelSelector.matchLabels[apps]" in message and "${jndi}" in message, message


def test_unknown_instance_type_is_admitted_with_a_warning(sandbox: Sandbox, e2e_namespace: str) -> None:
    ws = (
        BADLABEL.replace("badlabel", "newsku")
        .replace("${jndi}", "phi-3")
        .replace("Standard_NC6s_v3", "Standard_NC12s_v9")
    )
    out = sandbox.kubectl("apply", "-n", e2e_namespace, "-f", "-", input=ws, check=False)  # warnings: stderr
    assert "workspace.kaito.sh/newsku created" in out, out
    assert "Warning: resource.instanceType" in out and "was skipped" in out, out

    def conditions() -> str:
        got = sandbox.kubectl("get", "workspace", "newsku", "-n", e2e_namespace,
                              "-o", "jsonpath={.status.conditions[*].type}", check=False)  # fmt: skip
        return got if "ResourceReady" in got and "InferenceReady" in got else ""

    wait_for(conditions, 60, "conditions on the admitted Workspace")
