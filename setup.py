"""Optional compiled build: with ``TRICORN_COMPILE=1`` in the environment,
mypyc compiles the request path's modules (below) to C extensions: the
same source, type-checked; the pure Python modules stay beside them and are
what runs without the compiled build. Everything else about the package is
in pyproject.toml. See README.md, "The compiled build"."""

from __future__ import annotations

import os
import sys

from setuptools import setup

# The request path: the event vocabulary, the sans-IO HTTP/1.1 adapter and
# its fast request reader, the ASGI scope, the HTTP and WebSocket cycles,
# the event core (streams, connections, QUIC connections) and the lean
# events and byte streams the backend hands it (compiled together: calls
# between them are C calls). One rule for the coroutines among them: none awaits
# while it handles an exception (in an ``except`` or ``finally`` body, or an
# ``async with``). mypyc's coroutines do not keep a handled exception to
# themselves across a suspension: it stays the thread's handled exception
# while other tasks run (a later connection raised an earlier one's
# cancellation). What must await there (a connection's task group and its
# close) is in server/lifecycle.py, which stays Python;
# tests/unit/test_compiled_build.py checks every module listed here. And their
# module constants are Final: compiled code looks any other module-level name
# up in the module's dictionary at each use (the test checks that too).
COMPILED = [
    "src/tricorn/protocol/events.py",
    "src/tricorn/protocol/_h1_fast.py",
    "src/tricorn/protocol/http1.py",
    "src/tricorn/asgi/scope.py",
    "src/tricorn/asgi/cycle.py",
    "src/tricorn/asgi/http.py",
    "src/tricorn/asgi/websocket.py",
    "src/tricorn/server/streams.py",
    "src/tricorn/server/connection.py",
    "src/tricorn/server/quic.py",
    "src/tricorn/_lean.py",
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
        if sys.platform != "win32":
            # The library's functions are called from its own code and, by
            # the modules' shims, through a capsule: none needs to be a
            # dynamic symbol. Hidden, calls between them are direct (no PLT)
            # and may be inlined, and the symbol tables shrink (2,567
            # dynamic symbols -> PyInit alone): 69.0k -> 67.6k instructions
            # a small HTTP/1.1 request (callgrind, uvloop).
            for ext in ext_modules:
                ext.extra_compile_args.append("-fvisibility=hidden")

setup(ext_modules=ext_modules)
