"""What an inference pod's main container would run, read from its rendered command line.

All argv handling lives in :func:`parse_entrypoint`, so that one function decides what the stand-in serves
(and can later refuse a command line the real entry point would refuse).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from kaito_ctrl.api import labels as L
from kaito_ctrl.api.catalog import catalog
from kaito_ctrl.api.runtimes import API_CHAT, API_OPENAI, RUNTIMES, TRANSFORMERS, VLLM, runtime_image

DEFAULT_PORT = 5000
_SERVERS = {"/workspace/vllm/inference_api.py": VLLM, "/workspace/tfs/inference_api.py": TRANSFORMERS}


class EntrypointError(ValueError):
    """The container does not run a Kaito inference server the stand-in can stand in for."""


@dataclass(frozen=True)
class Entrypoint:
    runtime: str  # vllm | transformers
    api: str  # API_CHAT | API_OPENAI
    served_model_name: str
    port: int = DEFAULT_PORT
    pipeline: str = "text-generation"
    adapters: tuple[str, ...] = field(default_factory=tuple)
    image: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime, "api": self.api, "served_model_name": self.served_model_name,
            "port": self.port, "pipeline": self.pipeline, "adapters": list(self.adapters), "image": self.image,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entrypoint:
        return cls(**{**data, "adapters": tuple(data.get("adapters") or ())})


def _argv(container: dict[str, Any]) -> list[str]:
    command = [str(c) for c in container.get("command") or []] + [str(a) for a in container.get("args") or []]
    if len(command) >= 3 and command[0] in ("/bin/sh", "sh", "/bin/bash", "bash") and command[1] == "-c":
        try:
            return shlex.split(command[2])
        except ValueError as e:
            raise EntrypointError(f"the shell command line does not parse: {e}") from e
    return command


def _flags(argv: list[str]) -> dict[str, list[str]]:
    """``--a=b``, ``--a b`` and repeated flags, by name with '_' and '-' treated alike."""
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            key = name.replace("_", "-")
            if eq:
                out.setdefault(key, []).append(value)
            else:
                values = []
                while (
                    i + 1 < len(argv)
                    and not argv[i + 1].startswith("--")
                    and argv[i + 1] not in ("&&", ";", "&")
                ):
                    i += 1
                    values.append(argv[i])
                out.setdefault(key, []).extend(values or [""])
        i += 1
    return out


def _repository(image: str) -> str:
    """``registry/path/name:tag`` -> ``name``."""
    last = image.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].split(":", 1)[0]


def parse_entrypoint(container: dict[str, Any], annotations: dict[str, Any] | None = None) -> Entrypoint:
    """The runtime, API, model name, port and adapters the container's command line asks for.

    The runtime is the server script the command starts (``/workspace/vllm/...`` or ``/workspace/tfs/...``),
    else the pod's ``kaito.sh/runtime`` annotation. The API follows the image as the catalog records it: a
    seed-era per-model image under transformers answers ``POST /chat``; the base image answers the
    OpenAI-compatible API.
    """
    argv = _argv(container)
    script = next((a for a in argv if a in _SERVERS), None)
    runtime = _SERVERS[script] if script else str((annotations or {}).get(L.ANNOTATION_RUNTIME) or "")
    if runtime not in RUNTIMES:
        raise EntrypointError(
            "the command starts no Kaito inference server (/workspace/{vllm,tfs}/inference_api.py)"
        )
    flags = _flags(argv[argv.index(script) + 1 :] if script else argv)
    image = str(container.get("image") or "")
    repository = _repository(image)
    model = (flags.get("model") or flags.get("pretrained-model-name-or-path") or [""])[-1]
    name = (flags.get("served-model-name") or [""])[-1]
    if not name and repository.startswith("kaito-") and repository != catalog().base_image[0]:
        name = repository.removeprefix("kaito-")
    if not name and model:
        name = model.rstrip("/").rsplit("/", 1)[-1].lower()
    if not name:
        raise EntrypointError("no model name: neither --served-model-name, a preset image nor --model")
    preset = catalog().preset(name)
    if preset is not None:
        expected = runtime_image(preset, runtime)
        api = expected.api if expected.repository == repository else API_OPENAI
    else:
        api = API_CHAT if runtime == TRANSFORMERS and repository != catalog().base_image[0] else API_OPENAI
    port_values = flags.get("port") or [str(DEFAULT_PORT)]
    try:
        port = int(port_values[-1])
    except ValueError as e:
        raise EntrypointError(f"--port {port_values[-1]!r} is not a number") from e
    adapters = tuple(
        module.split("=", 1)[0] for module in flags.get("lora-modules") or [] if module and "=" in module
    )
    pipeline = (flags.get("pipeline") or ["text-generation"])[-1]
    return Entrypoint(runtime, api, name, port, pipeline, adapters, image)


def pod_adapters(pod: dict[str, Any]) -> tuple[str, ...]:
    """Adapter names a pod loads from /mnt/adapter: one ``puller-<name>`` init container per image adapter (an
    ``adapter-<name>`` one in older renderings), and one ``adapter-volume-<name>`` volume per volume adapter."""
    spec = pod.get("spec") or {}
    names: list[str] = []
    for c in spec.get("initContainers") or []:
        name = str(c.get("name", ""))
        if not any(
            str(m.get("mountPath", "")).startswith("/mnt/adapter") for m in c.get("volumeMounts") or []
        ):
            continue
        for prefix in ("puller-", "adapter-"):
            if name.startswith(prefix):
                names.append(name.removeprefix(prefix))
    for v in spec.get("volumes") or []:
        vname = str(v.get("name", ""))
        if vname.startswith("adapter-volume-"):
            names.append(vname.removeprefix("adapter-volume-"))
    return tuple(dict.fromkeys(names))
