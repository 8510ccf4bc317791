from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kaito_ctrl.cli.main import main
from tests.cases.invalid_workspaces import inference_ws

REPO = Path(__file__).resolve().parents[2]

# preset, SKU, expected nodes: at least five presets on at least three SKUs
PLAN_TABLE = [
    ("phi-3-mini-4k-instruct", "Standard_NC12s_v3", 1),
    ("phi-3-mini-128k-instruct", "Standard_NV36ads_A10_v5", 1),
    ("phi-4", "Standard_NC24ads_A100_v4", 1),
    ("llama-3.3-70b-instruct", "Standard_NC24ads_A100_v4", 3),
    ("llama-3.3-70b-instruct", "Standard_NC96ads_A100_v4", 1),
    ("qwen2.5-coder-32b-instruct", "Standard_NV36ads_A10_v5", 4),
    ("gpt-oss-120b", "Standard_NC24ads_A100_v4", 3),
    ("mistral-7b-instruct", "Standard_NC24ads_A100_v4", 1),
]


@pytest.mark.parametrize(("preset", "sku", "nodes"), PLAN_TABLE)
def test_plan_gives_node_count(
    preset: str, sku: str, nodes: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = inference_ws("plan")
    ws["inference"]["preset"]["name"] = preset
    ws["resource"]["instanceType"] = sku
    if preset.startswith("llama"):
        ws["inference"]["preset"]["presetOptions"] = {"modelAccessSecret": "hf"}
    f = tmp_path / "ws.yaml"
    f.write_text(yaml.safe_dump(ws))
    assert main(["plan", "-f", str(f), "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] and out["nodes"] == nodes, out


def test_plan_rejects_invalid_with_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = inference_ws("bad")
    ws["resource"]["labelSelector"]["matchLabels"]["apps"] = "${jndi}"
    f = tmp_path / "ws.yaml"
    f.write_text(yaml.safe_dump(ws))
    assert main(["plan", "-f", str(f)]) == 1
    assert "resource.labelSelector.matchLabels[apps]" in capsys.readouterr().err


def test_plan_accepts_the_seed_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for example in sorted((REPO / "examples").rglob("*.yaml")):
        assert main(["plan", "-f", str(example)]) == 0, example


def test_presets_lists_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert "phi-3-mini-4k-instruct" in names and "phi-2" not in names
    phi = next(r for r in rows if r["name"] == "phi-3-mini-4k-instruct")
    assert phi["smallest_fit"]
