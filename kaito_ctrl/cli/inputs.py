"""Reading Workspace files for the offline commands, with one-line errors that name the file and the field."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml


class CliError(Exception):
    """A problem the user fixes in their input: printed as one line, exit status 1."""


@dataclass(frozen=True)
class Document:
    source: str  # the file name as typed, or "<stdin>"
    index: int  # position in a multi-document file, from 1
    body: dict[str, Any]

    @property
    def where(self) -> str:
        return self.source if self.index == 1 else f"{self.source} (document {self.index})"


def read_text(filename: str) -> tuple[str, str]:
    """(source name, text) of ``filename``, ``-`` meaning standard input."""
    if filename == "-":
        return "<stdin>", sys.stdin.read()
    try:
        with open(filename, encoding="utf-8") as f:
            return filename, f.read()
    except FileNotFoundError:
        raise CliError(f"{filename}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{filename}: is a directory, not a YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"{filename}: cannot read it: {e}") from None


def documents(filename: str) -> Iterator[Document]:
    """The non-empty YAML documents of a file; each must be a mapping."""
    source, text = read_text(filename)
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise CliError(f"{source}: {line}not valid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise CliError(f"{source}: not valid YAML: {e}") from None
    found = False
    for i, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise CliError(f"{source}: document {i} is a {type(doc).__name__}, not a Workspace object")
        found = True
        yield Document(source, i, doc)
    if not found:
        raise CliError(f"{source}: no YAML document in it")
