"""The tuning Job's inputs and outputs as Kaito renders them (pkg/workspace/tuning/preset_tuning.go
prepareDataSource, SetTrainingResultVolume, SetTrainingOutputImagePush), and the data puller's script run for
real with /bin/sh and tar, a stand-in `skopeo` on PATH serving an image built FROM scratch (Kaito's image
format, pkg/workspace/image/README.md: any OCI image with /data, no shell needed)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from kaito_ctrl.controllers.workspace.inference_pod import PULLER_IMAGE
from kaito_ctrl.controllers.workspace.spec import WorkspaceSpec
from kaito_ctrl.controllers.workspace.tuning import render_tuning

PVC_IN = {"persistentVolumeClaim": {"claimName": "data"}}
PVC_OUT = {"persistentVolumeClaim": {"claimName": "results"}}


def _job_pod(source: dict[str, Any], dest: dict[str, Any]) -> dict[str, Any]:
    ws = {
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": "tune", "namespace": "ns", "uid": "u-1"},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"a": "b"}}},
        "tuning": {"preset": {"name": "phi-3-mini-4k-instruct"}, "method": "qlora", "input": source, "output": dest},
    }  # fmt: skip
    objs = render_tuning(WorkspaceSpec(ws), node_requirements=[], registry="r.io")
    return dict(next(o for o in objs if o["kind"] == "Job")["spec"]["template"]["spec"])


def _volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in next(v for v in pod["volumes"] if v["name"] == name).items() if k != "name"}


def test_image_input_is_pulled_not_run_with_its_credentials() -> None:
    pod = _job_pod(
        {"name": "in", "image": "r.io/data:1", "imagePullSecrets": ["pull-a", "pull-b"]},
        {"image": "r.io/out:1", "imagePushSecret": "push"},
    )
    inits = {c["name"]: c for c in pod["initContainers"]}
    puller = inits["data-puller"]
    assert puller["image"] == PULLER_IMAGE, "Kaito 0.12's skopeo puller, not the data image itself"
    assert all(c["image"] != "r.io/data:1" for c in pod["initContainers"] + pod["containers"])
    assert puller["command"][4:6] == ["r.io/data:1", "/mnt/data"], (
        "the image is an argument, never script text"
    )
    projected = _volume(pod, "docker-config-tuning-input")["projected"]["sources"]
    assert [s["secret"]["name"] for s in projected] == ["pull-a", "pull-b"]
    assert _volume(pod, "data") == {"emptyDir": {}}
    # Output image: a pusher beside the trainer reading the results directory, with the push secret.
    pusher = next(c for c in pod["containers"] if c["name"] == "pusher")
    assert {m["mountPath"] for m in pusher["volumeMounts"]} >= {"/mnt/output"}
    assert {"name": "push"} in pod["imagePullSecrets"]


def test_volume_input_and_output_are_the_users_volumes_with_no_puller_or_pusher() -> None:
    pod = _job_pod({"volumeSource": PVC_IN}, {"volumeSource": PVC_OUT})
    assert not {"data-puller", "data-downloader"} & {c["name"] for c in pod["initContainers"]}
    assert [c["name"] for c in pod["containers"]] == ["tune"], "no pusher for a volume output"
    assert _volume(pod, "data") == PVC_IN and _volume(pod, "results") == PVC_OUT
    trainer = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in trainer["volumeMounts"]}
    assert (
        mounts["data"] == "/mnt/data"
        and mounts["results"] == "/mnt/output"
        and mounts["config"] == "/mnt/config"
    )


# ---------------------------------------------------------------------------------------------------- the script
FAKE_SKOPEO = r"""#!/bin/sh
# copy [--dest-decompress] [--authfile=F] docker://IMG dir:LAYOUT | inspect --format F dir:LAYOUT
log="$FAKE_LOG"; echo "$*" >> "$log"
case "$1" in
  copy)
    for a in "$@"; do case "$a" in --authfile=*) auth="${a#--authfile=}";; docker://*) img="${a#docker://}";; dir:*) out="${a#dir:}";; esac; done
    if [ -n "$NEED_AUTH" ] && [ "$auth" != "$NEED_AUTH" ]; then echo "unauthorized" >&2; exit 1; fi
    [ "$img" = "$SERVE" ] || { echo "manifest unknown" >&2; exit 1; }
    mkdir -p "$out" && cp "$LAYER" "$out/0123abcd" ;;
  inspect) echo "0123abcd " ;;
esac
"""


def _layer(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _run(tmp: Path, image: str, *, need_auth: str = "") -> subprocess.CompletedProcess[str]:
    from kaito_ctrl.controllers.workspace.tuning import DATA_PULLER_SCRIPT

    bin_dir, mnt, auth = tmp / "bin", tmp / "mnt-data", tmp / "auth" / "tuning-input"
    for d in (bin_dir, mnt, auth):
        d.mkdir(parents=True, exist_ok=True)
    (auth / "pull-a.json").write_text("{}")
    skopeo = bin_dir / "skopeo"
    skopeo.write_text(FAKE_SKOPEO)
    skopeo.chmod(0o755)
    _layer(
        tmp / "layer.tar", {"data/dataset.parquet": b"rows", "data/sub/more.json": b"{}", "etc/x": b"ignored"}
    )
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp / "calls"), "SERVE": "r.io/data:1",
        "LAYER": str(tmp / "layer.tar"), "NEED_AUTH": need_auth, "TMPDIR": str(tmp),
    }  # fmt: skip
    argv = ["/bin/sh", "-c", DATA_PULLER_SCRIPT, "puller", image, str(mnt), str(tmp / "auth")]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


def test_the_script_copies_data_into_the_mounted_volume(tmp_path: Path) -> None:
    done = _run(tmp_path, "r.io/data:1", need_auth=str(tmp_path / "auth" / "tuning-input" / "pull-a.json"))
    assert done.returncode == 0, done.stderr
    mnt = tmp_path / "mnt-data"
    assert (mnt / "dataset.parquet").read_bytes() == b"rows", "the contents of /data, not /data itself"
    assert (mnt / "sub" / "more.json").exists() and not (mnt / "data").exists() and not (mnt / "etc").exists()


@pytest.mark.parametrize("image", ["r.io/other:1", "r.io/data:1; touch /tmp/pwned"])
def test_the_script_names_an_image_it_cannot_pull(tmp_path: Path, image: str) -> None:
    done = _run(tmp_path, image)
    assert done.returncode == 1
    assert f"cannot pull tuning input image {image}" in done.stderr
    assert not any((tmp_path / "mnt-data").iterdir())
