"""Optional compiled build: with ``TRICORN_COMPILE=1`` in the environment,
mypyc compiles the sans-IO HTTP/1.1 modules (below) to C extensions: the
same source, type-checked; the pure Python modules stay beside them and are
what runs without the compiled build. Everything else about the package is
in pyproject.toml. See README.md, "The compiled build"."""

from __future__ import annotations

import os
import sys

from setuptools import setup

# The sans-IO request path: the HTTP/1.1 adapter, its fast request reader,
# and the ASGI scope built from each request (compiled together: calls
# between them are C calls). Synchronous code only: mypyc's coroutines do
# not keep Python's exception state exactly (an exception handled in one
# coroutine was seen raised again in a later event loop), and the event
# core's cancellation and shutdown paths depend on it.
COMPILED = [
    "src/tricorn/protocol/_h1_fast.py",
    "src/tricorn/protocol/http1.py",
    "src/tricorn/asgi/scope.py",
]

ext_modules = []
if os.environ.get("TRICORN_COMPILE", "") == "1":
    try:
        from mypyc.build import mypycify
    except ImportError:
        # The backend asks setup.py for the build requirements (egg_info)
        # before it installs them (build_backend/tricorn_build.py adds mypy).
        if "egg_info" not in sys.argv:
            sys.exit("TRICORN_COMPILE=1: mypyc (pip install 'mypy>=1.11') is not installed")
    else:
        ext_modules = mypycify(
            ["--config-file", "build_backend/mypyc.ini", *COMPILED], opt_level="3"
        )

setup(ext_modules=ext_modules)
