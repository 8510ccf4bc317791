"""Would the real entry point start with this container's command line? A pure check for the sandbox's
stand-in runtime, so a rendering error shows there as it would on a GPU node: the container exits, the pod
goes into CrashLoopBackOff, and the reason is the server's complaint.

It reads the ``/bin/sh -c`` script the way the shell would run it (``;``, ``&&`` and the multi-node
``if ...; then ...; else ...; fi``), finds each program Kaito's images start, and checks its flags against the
sets in :mod:`kaito_ctrl.api.runtime_args`, the same sets the renderer draws from. Refused: a flag the program
does not know, a missing model argument, a value-less flag that needs one, and adapters or a config file the
command points at but no volume provides.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kaito_ctrl.api import runtime_args as rt

_SUBSTITUTION = re.compile(r"\$\([^()]*\)")  # $(...) runs in a subshell: one opaque word here
_SEPARATORS = {";", "&&", "||", "&", "|"}
_KEYWORDS = {"then", "else", "do", "done", "fi", "{", "}"}
_SHELLS = {"/bin/sh", "sh", "/bin/bash", "bash"}
# Flags whose value may not be empty (all the others the renderer emits bare are booleans).
_BOOLEAN = frozenset(
    {"trust-remote-code", "enable-auto-tool-choice", "enable-lora", "enable-expert-parallel",
     "allow-remote-files", "kaito-disable-rate-limit", "trust_remote_code", "allow_remote_files", "from_tf",
     "force_download", "resume_download", "output_loading_info", "load_in_4bit", "load_in_8bit",
     "use_deepspeed"}
)  # fmt: skip


@dataclass(frozen=True)
class Program:
    """One entry point: the flags it accepts and the ones it cannot start without."""

    name: str
    accepted: frozenset[str]
    required: frozenset[str] = frozenset()
    # argparse (vLLM) and HfArgumentParser (transformers) accept '-' and '_' alike.
    fold_dashes: bool = True

    def key(self, flag: str) -> str:
        return flag.replace("_", "-") if self.fold_dashes else flag


VLLM_SERVER = Program(
    "vLLM server (/workspace/vllm/inference_api.py)", rt.VLLM_SERVER_FLAGS, frozenset({"model"})
)
TRANSFORMERS_SERVER = Program(
    "transformers server (/workspace/tfs/inference_api.py)",
    rt.TRANSFORMERS_SERVER_FLAGS,
    frozenset({"pretrained_model_name_or_path"}),  # the base image has no weights at the default path
)
SEED_SERVER = Program(
    "seed-era transformers server (inference_api.py)", rt.SEED_SERVER_FLAGS, frozenset({"pipeline"})
)
ACCELERATE = Program("accelerate launch", rt.ACCELERATE_FLAGS)
TORCHRUN = Program("torchrun", rt.TORCHRUN_FLAGS, frozenset({"nnodes", "nproc_per_node"}), fold_dashes=False)
LLAMA2_SERVER = Program("llama-2 server (inference_api.py)", rt.LLAMA2_SERVER_FLAGS, fold_dashes=False)
RAY_LEADER = Program(
    "multi-node-serving.sh leader", rt.RAY_LEADER_FLAGS, frozenset({"ray_cluster_size"}), False
)
RAY_WORKER = Program("multi-node-serving.sh worker", rt.RAY_WORKER_FLAGS, frozenset({"ray_address"}), False)


class EntrypointRefused(ValueError):
    """The entry point would exit at once; the message is its reason."""


def script_of(container: Mapping[str, Any]) -> list[str]:
    """The container's argv, or the words of its ``sh -c`` script."""
    argv = [str(c) for c in container.get("command") or []] + [str(a) for a in container.get("args") or []]
    if len(argv) >= 3 and argv[0] in _SHELLS and argv[1] == "-c":
        text = _SUBSTITUTION.sub("SUBSTITUTION", argv[2])
        try:
            lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            return list(lexer)
        except ValueError as e:
            raise EntrypointRefused(f"/bin/sh: the command line does not parse: {e}") from e
    return argv


def simple_commands(words: list[str]) -> list[list[str]]:
    """Split shell words into the simple commands they run; an ``if`` condition (``[ ... ]``) is a command too,
    and keywords are dropped."""
    commands: list[list[str]] = []
    current: list[str] = []
    for word in words:
        if word in _SEPARATORS:
            if current:
                commands.append(current)
            current = []
        elif not current and word in _KEYWORDS | {"if", "while"}:
            continue
        else:
            current.append(word)
    if current:
        commands.append(current)
    return commands


def parse_flags(program: Program, args: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """(flags, positional words): ``--a=b``, ``--a b`` and bare ``--a``."""
    flags: dict[str, str] = {}
    positional: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        word = items[i]
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if not eq and name not in _BOOLEAN and i + 1 < len(items) and not items[i + 1].startswith("--"):
                i += 1
                value = items[i]
            flags[program.key(name)] = value
        else:
            positional.append(word)
        i += 1
    return flags, positional


def check_program(program: Program, args: Iterable[str]) -> dict[str, str]:
    flags, positional = parse_flags(program, args)
    accepted = {program.key(f) for f in program.accepted}
    unknown = sorted(f for f in flags if f not in accepted)
    if unknown:
        raise EntrypointRefused(
            f"{program.name}: unrecognized arguments: {' '.join('--' + f for f in unknown)}"
        )
    if positional:
        raise EntrypointRefused(f"{program.name}: unexpected arguments: {' '.join(positional)}")
    missing = sorted(f for f in program.required if program.key(f) not in flags)
    if missing:
        raise EntrypointRefused(
            f"{program.name}: the following arguments are required: {', '.join('--' + f for f in missing)}"
        )
    empty = sorted(f for f, v in flags.items() if v == "" and f not in {program.key(b) for b in _BOOLEAN})
    if empty:
        raise EntrypointRefused(
            f"{program.name}: expected one argument: {', '.join('--' + f for f in empty)}"
        )
    return flags


def _mounted(path: str, mounts: Iterable[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def _check_command(words: list[str], mounts: list[str], seed_image: bool) -> str | None:
    """The server a simple command starts (None for helpers such as ``cd`` or ``[``)."""
    head = words[0]
    if head in ("cd", "[", "test", "true", "echo", "export"):
        return None
    if head in ("python3", "python") and len(words) > 1 and words[1] == rt.VLLM_SERVER:
        flags = check_program(VLLM_SERVER, words[2:])
        if "enable-lora" in flags:
            adapters = flags.get("kaito-adapters-dir") or rt.ADAPTERS_DIR
            if not _mounted(adapters, mounts):
                raise EntrypointRefused(
                    f"{VLLM_SERVER.name}: --enable-lora but the adapters directory {adapters} is not there "
                    "(no volume is mounted at it)"
                )
        config = flags.get("kaito-config-file")
        if config and not _mounted(config, mounts):
            raise EntrypointRefused(
                f"{VLLM_SERVER.name}: config file {config} not found (no volume holds it)"
            )
        return rt.VLLM
    if head == "accelerate" and len(words) > 1 and words[1] == "launch":
        rest = words[2:]
        script = next((i for i, w in enumerate(rest) if not w.startswith("--") and w.endswith(".py")), None)
        if script is None:
            raise EntrypointRefused(
                "accelerate launch: the following arguments are required: training_script"
            )
        check_program(ACCELERATE, rest[:script])
        server = rest[script]
        if server not in (rt.TFS_SERVER, "inference_api.py"):
            raise EntrypointRefused(
                f"accelerate launch: can't open file {server!r}: not a Kaito inference server"
            )
        check_program(SEED_SERVER if seed_image else TRANSFORMERS_SERVER, rest[script + 1 :])
        return rt.TRANSFORMERS
    if head == "torchrun":
        rest = words[1:]
        script = next((i for i, w in enumerate(rest) if not w.startswith("--") and w.endswith(".py")), None)
        if script is None:
            raise EntrypointRefused("torchrun: the following arguments are required: training_script")
        check_program(TORCHRUN, rest[:script])
        check_program(LLAMA2_SERVER, rest[script + 1 :])
        return rt.TRANSFORMERS
    if head == rt.RAY_SCRIPT and len(words) > 1 and words[1] in ("leader", "worker"):
        check_program(RAY_LEADER if words[1] == "leader" else RAY_WORKER, words[2:])
        return None
    raise EntrypointRefused(f"{head}: not an entry point of Kaito's inference images")


def is_seed_image(image: str) -> bool:
    """A per-model image of the seed era (``kaito-<preset>:<tag>``), not the base image."""
    repository = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return repository.startswith("kaito-") and repository != "kaito-base"


def check_entrypoint(container: Mapping[str, Any]) -> str:
    """The runtime the container's command starts, or :class:`EntrypointRefused` with the reason the real
    entry point would exit with."""
    mounts = [str(m.get("mountPath") or "") for m in container.get("volumeMounts") or []]
    seed_image = is_seed_image(str(container.get("image") or ""))
    commands = simple_commands(script_of(container))
    if not commands:
        raise EntrypointRefused("the container has no command")
    runtimes = [r for r in (_check_command(c, mounts, seed_image) for c in commands) if r]
    if not runtimes:
        raise EntrypointRefused("the command starts no Kaito inference server")
    return runtimes[0]


def refusal(container: Mapping[str, Any]) -> str | None:
    """The entry point's complaint about the container, or None when it would start."""
    try:
        check_entrypoint(container)
    except EntrypointRefused as e:
        return str(e)
    return None
