"""The CLI behaves as a Unix tool: quiet in a pipe that closes early, --help with examples, one-line errors
naming the file and the field (exit 1), usage errors exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kaito_ctrl.cli.main import build_parser, main

CLI = [sys.executable, "-m", "kaito_ctrl.cli.main"]
VALID = {
    "apiVersion": "kaito.sh/v1alpha1",
    "kind": "Workspace",
    "metadata": {"name": "ws"},
    "resource": {"instanceType": "Standard_NC12s_v3", "labelSelector": {"matchLabels": {"apps": "ws"}}},
    "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
}


def test_output_into_a_pipe_that_closes_early_ends_quietly() -> None:
    # `kaito-ctrl presets --all | head -1`: the reader goes away after one line.
    producer = subprocess.Popen([*CLI, "presets", "--all"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert producer.stdout is not None
    producer.stdout.readline()
    producer.stdout.close()
    _, err = producer.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
    assert producer.returncode in (0, 141)


def test_render_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    f = tmp_path / "ws.yaml"
    f.write_text(yaml.safe_dump(VALID))
    res = subprocess.run(
        f"{sys.executable} -m kaito_ctrl.cli.main render -f {f} | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr


def _subcommands() -> list[list[str]]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    out: list[list[str]] = []
    for name, sub in action.choices.items():  # type: ignore[union-attr]
        nested = [a for a in sub._actions if getattr(a, "choices", None) and a.dest.endswith("_cmd")]
        if nested:
            out += [[name, n] for n in nested[0].choices]  # type: ignore[union-attr]
        else:
            out.append([name])
    return out


@pytest.mark.parametrize("command", _subcommands(), ids=" ".join)
def test_every_command_has_help_with_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "kaito-ctrl " + " ".join(command) in out.split("examples:")[1], out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["render"])
    assert exit_.value.code == 2


@pytest.mark.parametrize("command", ["render", "plan"])
def test_invalid_workspace_is_one_line_per_problem_naming_file_and_field(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = dict(VALID, inference={"preset": {"name": "no-such-model"}})
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    assert main([command, "-f", str(f)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith(f"kaito-ctrl: {f}: ") for line in err), err
    assert any("inference.preset.name" in line for line in err), err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("resource: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "not a Workspace object"),
        ("", "no YAML document"),
    ],
)
def test_unreadable_input_is_one_line_exit_1(
    content: str | None, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "in.yaml"
    if content is not None:
        f.write_text(content)
    assert main(["render", "-f", str(f)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"kaito-ctrl: {f}") and expected in err[0], err


def test_render_names_the_document_of_a_multi_document_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "two.yaml"
    f.write_text(yaml.safe_dump(VALID) + "---\n" + yaml.safe_dump({**VALID, "kind": "Deployment"}))
    assert main(["render", "-f", str(f)]) == 1
    assert f"kaito-ctrl: {f} (document 2): kind: expected Workspace" in capsys.readouterr().err


def test_render_references_the_node_class_given_as_run_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "ws.yaml"
    f.write_text(yaml.safe_dump(VALID))
    flags = ["--node-class-group", "karpenter.kwok.sh", "--node-class-kind", "KWOKNodeClass"]
    assert main(["render", "-f", str(f), "--node-provisioner", "nodeclaim", *flags, "-o", "json"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    claims = [o for o in out["items"] if o["kind"] == "NodeClaim"]
    assert claims and all(
        c["spec"]["nodeClassRef"]
        == {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "default"}
        for c in claims
    )
    # Kaito's AKS node class by default, and an empty value is refused naming the flag.
    assert main(["render", "-f", str(f), "--node-provisioner", "nodeclaim", "-o", "json"]) == 0
    default = yaml.safe_load(capsys.readouterr().out)
    assert {c["spec"]["nodeClassRef"]["kind"] for c in default["items"] if c["kind"] == "NodeClaim"} == {
        "KaitoNodeClass"
    }
    assert main(["render", "-f", str(f), "--node-class-kind", ""]) == 1
    assert "--node-class-kind must not be empty" in capsys.readouterr().err
