"""Build hook: the top-level ``templates/`` (the one source of the manifests both controllers render) and the
generated install manifests go into the wheel as package data under ``kaito_ctrl/_data/``, so an installed
kaito-ctrl renders without a checkout or an environment variable. Everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (source in the checkout or sdist, destination inside the package)
DATA = (
    ("templates", "templates"),
    ("manifests/crds", "manifests/crds"),
    ("manifests/tuning-params.yaml", "manifests/tuning-params.yaml"),
)


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads templates/ from the checkout itself
        target = Path(self.build_lib) / "kaito_ctrl" / "_data"
        for source, dest in DATA:
            src, dst = ROOT / source, target / dest
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPyWithData})
