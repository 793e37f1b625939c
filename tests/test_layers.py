"""The import-direction contract of STYLE.md §10, checked with ``ast``.

Every module under ``src/tricorn`` belongs to one layer. A layer may import the
standard library, the tricorn modules listed for it and the third-party
distributions listed for it. Nothing else, so nothing imports upward. On top of
that, only ``tricorn/_backend.py`` may name ``asyncio``, ``uvloop`` or ``trio``
(STYLE.md principle 8).

All imports count: also the ones under ``if TYPE_CHECKING:`` or inside a
function, since they are dependencies all the same. Relative imports are
resolved. ``from pkg import name`` counts as importing ``pkg.name`` when that is
a module. ``importlib.import_module("x")`` and ``find_spec("x")`` with a
constant name count too, so the backend rule cannot be dodged with a string.

A new module must be placed in :data:`LAYERS` before the test passes, so its
place in the stack is decided on purpose.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE_DIR = SRC / "tricorn"

#: Named by only this module, anywhere in src (STYLE.md principle 8).
BACKEND_MODULE = "tricorn._backend"
BACKEND_LIBRARIES = frozenset({"asyncio", "uvloop", "trio"})

#: Modules that count as standard library although ``sys.stdlib_module_names``
#: of some supported Python lacks them: ``tomllib`` is 3.11+, and ``tomli`` and
#: ``exceptiongroup`` are its and 3.11's ``ExceptionGroup`` backports (pyproject
#: requires them on 3.10 only); ``_typeshed`` exists for type checkers only, and
#: ``typing_extensions`` is imported for them only (``dataclass_transform``'s
#: ``frozen_default``, 3.12+ in ``typing``), under ``TYPE_CHECKING``.
STDLIB_BACKPORTS = frozenset(
    {"tomllib", "tomli", "exceptiongroup", "_typeshed", "typing_extensions"}
)
STDLIB = frozenset(sys.stdlib_module_names) | STDLIB_BACKPORTS


@dataclass(frozen=True)
class Layer:
    """What the modules under one dotted prefix may import besides the stdlib."""

    internal: tuple[str, ...]
    """tricorn modules or packages (a prefix also allows everything below it)."""
    third_party: frozenset[str] = frozenset()
    """Top-level names of third-party distributions."""


# hpack and hyperframe are h2's parts (HPACK encoding, frames).
PROTOCOL_LIBRARIES = frozenset(
    {"h11", "httptools", "h2", "hpack", "hyperframe", "aioquic", "wsproto"}
)

#: Longest matching prefix wins, so ``tricorn.protocol.events`` is stricter
#: than the rest of ``tricorn.protocol``. ``tricorn`` itself is only the public
#: facade ``__init__.py``.
LAYERS: dict[str, Layer] = {
    # The facade: serve() hands the server the backend's fast paths.
    "tricorn": Layer(
        ("tricorn.config", "tricorn.server", "tricorn.errors", "tricorn._backend"),
        frozenset({"anyio"}),
    ),
    "tricorn.__main__": Layer(("tricorn.cli",)),
    "tricorn.errors": Layer(()),
    "tricorn.config": Layer(("tricorn.config", "tricorn.errors")),
    "tricorn.protocol": Layer(("tricorn.protocol", "tricorn.errors"), PROTOCOL_LIBRARIES),
    # The shared event vocabulary: stdlib only (DESIGN.md's layer table).
    "tricorn.protocol.events": Layer(()),
    "tricorn.asgi": Layer(
        # (tricorn.middleware: stdlib-only leaves; scopes apply the proxy headers)
        ("tricorn.asgi", "tricorn.protocol.events", "tricorn.errors", "tricorn.middleware"),
        frozenset({"anyio"}),
    ),
    "tricorn.server": Layer(
        (
            "tricorn.server",
            "tricorn.protocol",
            "tricorn.asgi",
            "tricorn.config",
            "tricorn.logging",
            "tricorn.errors",
            # Not in STYLE.md §10: serve() binds the sockets itself when called
            # without pre-bound ones (the programmatic API). sockets is below
            # server (config, errors, stdlib), so the direction stays downward.
            "tricorn.sockets",
            "tricorn.middleware",  # the trusted-proxies setting, parsed once
            "tricorn.metrics",
        ),
        frozenset({"anyio"}),
    ),
    "tricorn.sockets": Layer(("tricorn.config", "tricorn.errors")),
    "tricorn.logging": Layer(()),
    # The metrics registry and its endpoint's app: below server, workers and
    # supervisor, which all count into it.
    "tricorn.metrics": Layer(("tricorn.asgi.types", "tricorn.config")),
    "tricorn.middleware": Layer(("tricorn.middleware",)),
    "tricorn.supervisor": Layer(
        (
            "tricorn.workers",
            "tricorn.config",
            "tricorn.sockets",
            "tricorn.errors",
            "tricorn.reloader",
            "tricorn.metrics",
        )
    ),
    # watchfiles is optional (tricorn[reload]); without it the reloader polls.
    "tricorn.reloader": Layer(("tricorn.errors",), frozenset({"watchfiles"})),
    "tricorn.workers": Layer(
        (
            "tricorn.supervisor",
            "tricorn.server",
            "tricorn._backend",
            "tricorn.config",
            "tricorn.sockets",
            "tricorn.logging",
            "tricorn.errors",
            "tricorn.metrics",
            # Not in STYLE.md §10: load_app's "wsgi:" / "asgi:" prefixes pick
            # the adapter (asgi is below server, so the direction stays down).
            "tricorn.asgi.app",
            "tricorn.asgi.wsgi",
        ),
        # Not in STYLE.md §10: the process-level signal loop uses anyio
        # (open_signal_receiver, Event). It is backend-neutral, so it does not
        # break principle 8.
        frozenset({"anyio"}),
    ),
    "tricorn.cli": Layer(("tricorn.config", "tricorn.workers", "tricorn.errors")),
    "tricorn._backend": Layer(
        ("tricorn.errors", "tricorn._lean"), frozenset({"anyio"}) | BACKEND_LIBRARIES
    ),
    # _backend's per-request events and streams, apart for the compiled
    # build: they drive the loop modules _backend hands them, naming none.
    "tricorn._lean": Layer((), frozenset({"anyio"})),
}


@dataclass(frozen=True)
class Import:
    target: str
    line: int


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    """The key of :data:`LAYERS` that governs ``module``, or None."""
    matches = [key for key in LAYERS if _within(module, key)]
    # "tricorn" matches every module, but it governs only the facade itself.
    matches = [key for key in matches if key != "tricorn" or module == "tricorn"]
    return max(matches, key=len, default=None)


def _resolve_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".")
    if node.level - 1 >= len(parts):
        raise ValueError(f"relative import beyond the top-level package in {module}")
    base = ".".join(parts[: len(parts) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


_DYNAMIC_IMPORTERS = frozenset({"import_module", "find_spec", "__import__"})


def _dynamic_target(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in _DYNAMIC_IMPORTERS or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def imports_of(
    source: str, module: str, *, is_package: bool, is_module: Callable[[str], bool]
) -> Iterator[Import]:
    """Every module that ``source`` (the text of ``module``) imports.

    :param is_module: whether a dotted name is a module of the tree, used to
        tell ``from pkg import submodule`` from ``from pkg import attribute``.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_base(node, module, is_package)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield Import(candidate if is_module(candidate) else base, node.lineno)
        elif isinstance(node, ast.Call) and (target := _dynamic_target(node)):
            yield Import(target, node.lineno)


def violation(module: str, target: str) -> str | None:
    """Why ``module`` may not import ``target``, or None if it may."""
    top = target.partition(".")[0]
    if top == "__future__":
        return None
    if top in BACKEND_LIBRARIES and module != BACKEND_MODULE:
        return f"only {BACKEND_MODULE} may import {top} (use anyio)"
    key = layer_of(module)
    if key is None:
        return f"{module} is in no layer: add it to LAYERS in tests/test_layers.py"
    layer = LAYERS[key]
    if top == "tricorn":
        if any(_within(target, allowed) for allowed in layer.internal):
            return None
        allowed_text = ", ".join(layer.internal) or "no tricorn module"
        return f"layer {key} may import {allowed_text}; not {target}"
    if top in STDLIB or top in layer.third_party:
        return None
    allowed_text = ", ".join(sorted(layer.third_party)) or "none"
    return f"layer {key} may import the stdlib and third-party {allowed_text}; not {target}"


def module_name(path: Path) -> tuple[str, bool]:
    """Dotted name of a file under ``src``, and whether it is a package."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def source_modules() -> dict[str, Path]:
    return {module_name(path)[0]: path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def check_tree() -> list[str]:
    """Every layering violation under src/tricorn, as ``file:line: reason``."""
    modules = source_modules()
    problems = []
    for module, path in modules.items():
        _, is_package = module_name(path)
        source = path.read_text(encoding="utf-8")
        where = path.relative_to(SRC.parent)
        if layer_of(module) is None:
            problems.append(f"{where}:1: {violation(module, 'tricorn')}")
            continue
        for imp in imports_of(
            source, module, is_package=is_package, is_module=modules.__contains__
        ):
            reason = violation(module, imp.target)
            if reason:
                problems.append(f"{where}:{imp.line}: {reason}")
    return problems


def test_src_tree_respects_the_layers() -> None:
    assert PACKAGE_DIR.is_dir(), PACKAGE_DIR
    problems = check_tree()
    assert not problems, "import rules of STYLE.md §10 broken:\n" + "\n".join(problems)


# The checker itself, on small made-up modules, so the test above can fail.

KNOWN = {"tricorn.protocol", "tricorn.protocol.events", "tricorn.protocol.http1", "tricorn.errors"}


def _violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    found = imports_of(source, module, is_package=is_package, is_module=KNOWN.__contains__)
    return [reason for imp in found if (reason := violation(module, imp.target))]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("tricorn.protocol.http1", "import asyncio"),
        ("tricorn.server.connection", "import trio.lowlevel"),
        ("tricorn.workers", "import importlib\nimportlib.import_module('uvloop')"),
        ("tricorn.workers", "from importlib.util import find_spec\nfind_spec('trio')"),
        ("tricorn.protocol.http1", "import anyio"),
        ("tricorn.protocol.http1", "from ..server import connection"),
        ("tricorn.protocol.events", "from ..errors import ProtocolViolation"),
        ("tricorn.protocol.events", "import h11"),
        ("tricorn.asgi.http", "from ..protocol import http1"),
        ("tricorn.asgi.http", "from ..protocol.http1 import H1Adapter"),
        (
            "tricorn.asgi.scope",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..config import Config",
        ),
        ("tricorn.config.load", "import anyio"),
        ("tricorn.config.load", "from ..server import serve"),
        ("tricorn.errors", "from .config import Config"),
        ("tricorn.middleware.proxy_headers", "import anyio"),
        ("tricorn.middleware.proxy_headers", "from ..asgi.types import Scope"),
        ("tricorn.logging", "from .config import Config"),
        ("tricorn.sockets", "from .server import serve"),
        ("tricorn.cli", "from .server.serve import serve"),
        ("tricorn.server.serve", "from .. import cli"),
        ("tricorn.server.serve", "from tricorn import Config"),
        ("tricorn.server.serve", "import h11"),
        ("tricorn.workers", "from .protocol import events"),
        ("tricorn.unplaced", "import os"),
    ],
)
def test_checker_reports_forbidden_imports(module: str, source: str) -> None:
    assert _violations(module, source)


@pytest.mark.parametrize(
    ("module", "source", "is_package"),
    [
        ("tricorn._backend", "import asyncio\nimport trio\nimport uvloop\nimport anyio", False),
        ("tricorn.protocol.http1", "import h11\nfrom .events import Request", False),
        ("tricorn.protocol.http1", "from ..errors import ProtocolViolation", False),
        ("tricorn.protocol", "from . import events", True),
        ("tricorn.asgi.http", "import anyio\nfrom ..protocol import events", False),
        (
            "tricorn.asgi.http",
            "from ..protocol.events import Request\nfrom .. import errors",
            False,
        ),
        (
            "tricorn.config.load",
            "import tomllib\nimport tomli\nfrom ..errors import ConfigError",
            False,
        ),
        ("tricorn.server.connection", "from ..protocol.http1 import H1Adapter\nimport ssl", False),
        ("tricorn.middleware.proxy_headers", "import ipaddress\nfrom . import _util", False),
        ("tricorn.cli", "from __future__ import annotations\nimport argparse", False),
        ("tricorn", "from .config import Config\nfrom .server.serve import serve", True),
        ("tricorn.__main__", "from .cli import main", False),
    ],
)
def test_checker_allows_permitted_imports(module: str, source: str, is_package: bool) -> None:
    assert _violations(module, source, is_package=is_package) == []


def test_relative_imports_resolve_against_the_package() -> None:
    def targets(source: str, module: str, is_package: bool) -> list[str]:
        found = imports_of(source, module, is_package=is_package, is_module=KNOWN.__contains__)
        return [imp.target for imp in found]

    assert targets("from . import events", "tricorn.protocol", True) == ["tricorn.protocol.events"]
    assert targets("from . import events", "tricorn.protocol.http1", False) == [
        "tricorn.protocol.events"
    ]
    assert targets("from ..errors import X", "tricorn.protocol.http1", False) == ["tricorn.errors"]
    assert targets("from .. import Config", "tricorn.server.serve", False) == ["tricorn"]
    with pytest.raises(ValueError, match="beyond the top-level"):
        targets("from ... import x", "tricorn.errors", False)
