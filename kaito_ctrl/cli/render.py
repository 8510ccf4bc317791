"""``kaito-ctrl render``: every object the controllers would create for a Workspace, offline."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
import yaml

from kaito_ctrl.cli.inputs import CliError, documents
from kaito_ctrl.controllers.workspace.desired import MODES, InvalidWorkspace, desired_objects
from kaito_ctrl.settings import Settings

EXAMPLES = """\
examples:
  kaito-ctrl render -f examples/inference/kaito_workspace_phi_3.yaml
  kaito-ctrl render -f workspace.yaml --node-provisioner byo -o json
  kaito-ctrl render -f workspace.yaml --node-class-group karpenter.kwok.sh --node-class-kind KWOKNodeClass
  kubectl get workspace NAME -o yaml | kaito-ctrl render -f -      # exact names, from the live uid
  kaito-ctrl render -f workspace.yaml | kubectl apply --dry-run=server -f -
"""


def render(args: argparse.Namespace) -> int:
    node_class = (args.node_class_group, args.node_class_kind, args.node_class_name)
    for part, value in zip(("group", "kind", "name"), node_class, strict=True):
        if not value.strip():
            raise CliError(f"--node-class-{part} must not be empty")
    objects: list[dict[str, Any]] = []
    for doc in documents(args.filename):
        if doc.body.get("kind") != "Workspace":
            raise CliError(f"{doc.where}: kind: expected Workspace, got {doc.body.get('kind')!r}")
        try:
            desired = desired_objects(
                doc.body,
                mode=args.node_provisioner,
                registry=args.image_registry,
                node_class=node_class,
            )
        except InvalidWorkspace as e:
            raise CliError("\n".join(f"{doc.where}: {err}" for err in e.errors)) from None
        for note in desired.notes:
            print(f"note: {doc.where}: {note}", file=sys.stderr)
        objects += desired.objects
    if args.output == "json":
        body = {"apiVersion": "v1", "kind": "List", "items": objects}
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write("---\n".join(yaml.safe_dump(o, sort_keys=False, width=120) for o in objects))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = Settings()
    p = sub.add_parser(
        "render",
        help="print every object kaito-ctrl would create for a Workspace (offline, no cluster)",
        description=(
            "Print the node claims, Services, Deployment or StatefulSet, Job and ConfigMaps the controllers would "
            "create for each Workspace in the file, through the same defaulting, validation and renderer."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--filename", required=True, help="Workspace YAML file, or - for stdin")
    p.add_argument(
        "--node-provisioner",
        choices=MODES,
        default=defaults.node_provisioner,
        help=f"how nodes are requested, as `kaito-ctrl run` would (default {defaults.node_provisioner})",
    )
    # The same node-class flags as `kaito-ctrl run`: what NodeClaims reference when another Karpenter provider
    # (kwok, AWS, ...) launches the nodes.
    for part in ("group", "kind", "name"):
        p.add_argument(
            f"--node-class-{part}",
            default=getattr(defaults, f"node_class_{part}"),
            help=f"{part} of the node class NodeClaims reference (default {getattr(defaults, f'node_class_{part}')})",
        )
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.add_argument(
        "--image-registry",
        default=defaults.image_registry,
        help=f"preset image registry (default {defaults.image_registry})",
    )
    p.set_defaults(func=render)
