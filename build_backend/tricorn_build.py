"""tricorn's build backend: setuptools, plus mypy (for mypyc) as a build
requirement when ``TRICORN_COMPILE=1`` asks for the compiled modules (see
setup.py). Without it the build needs setuptools alone and makes the pure
Python wheel."""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 - the rest of the PEP 517/660 hooks

_MYPYC = ["mypy>=1.11"]


def _compiling() -> bool:
    return os.environ.get("TRICORN_COMPILE", "") == "1"


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    requires: list[str] = _setuptools.get_requires_for_build_wheel(config_settings)
    return requires + _MYPYC if _compiling() else requires


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    requires: list[str] = _setuptools.get_requires_for_build_editable(config_settings)
    return requires + _MYPYC if _compiling() else requires
