"""The one manifest renderer both controllers use: Jinja2 templates in ``templates/`` rendered to YAML and
parsed into dicts. Values are inserted with ``tojson`` so quoting is never a template's problem."""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import orjson
import yaml

_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def templates_dir() -> Path:
    """``KAITO_TEMPLATES_DIR`` when set (to try edited templates); else the copy an installed wheel carries;
    else the checkout's ``templates/`` (editable installs and the test suite)."""
    env = os.environ.get("KAITO_TEMPLATES_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    packaged = here / "_data" / "templates"
    return packaged if packaged.is_dir() else here.parent / "templates"


def _tojson(value: Any) -> str:
    return orjson.dumps(value).decode()


@cache
def environment(directory: str | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory or str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - renders YAML, not HTML; values go through tojson
        keep_trailing_newline=True,
    )
    env.filters["tojson"] = _tojson
    return env


# The last renders by a digest of (template, values), as JSON. A Workspace is reconciled several times with the
# same inputs (its own writes, its pods, its nodes come back as events) and each reconcile renders to compare;
# building the objects from YAML is a fifth of a reconcile's CPU (docs/performance.md, P7), parsing JSON a
# hundredth of it. 2,048 renders (a burst of 1,000 new Workspaces renders a Service and a workload each before
# their second reconciles) hold about 3 MiB.
MEMO_SIZE = 2048
_memo: OrderedDict[bytes, bytes] = OrderedDict()


def _memo_key(template: str, values: dict[str, Any]) -> bytes | None:
    try:
        body = orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None  # a value JSON cannot hold: render it every time
    return hashlib.blake2b(template.encode() + b"\0" + body, digest_size=20).digest()


def render(template: str, **values: Any) -> list[dict[str, Any]]:
    """Render ``template`` (a multi-document YAML template) into a list of objects, new on every call (callers
    may change them)."""
    key = _memo_key(template, values)
    if key is not None and (blob := _memo.get(key)) is not None:
        _memo.move_to_end(key)
        docs: list[dict[str, Any]] = orjson.loads(blob)
        return docs
    text = environment().get_template(template).render(**values)
    # libyaml's loader when PyYAML has it: the pure-Python one costs milliseconds per reconcile.
    docs = [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc]
    if key is not None:
        try:
            blob = orjson.dumps(docs)
        except TypeError:
            return docs
        if orjson.loads(blob) == docs:  # only what JSON holds exactly (a YAML date would come back a string)
            _memo[key] = blob
            if len(_memo) > MEMO_SIZE:
                _memo.popitem(last=False)
    return docs
