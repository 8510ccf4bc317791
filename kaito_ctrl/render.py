"""The one manifest renderer both controllers use: Jinja2 templates in ``templates/`` rendered to YAML and
parsed into dicts. Values are inserted with ``tojson`` so quoting is never a template's problem."""

from __future__ import annotations

import os
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


def render(template: str, **values: Any) -> list[dict[str, Any]]:
    """Render ``template`` (a multi-document YAML template) into a list of objects."""
    text = environment().get_template(template).render(**values)
    # libyaml's loader when PyYAML has it: the pure-Python one costs milliseconds per reconcile.
    return [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc]
