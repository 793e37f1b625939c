"""The compiled build's rules (setup.py): for coroutines, and for module constants.

A coroutine compiled by mypyc that suspends while it handles an exception
(an ``await`` in an ``except`` or ``finally`` body, or the exit of an
``async with``, awaited with the exception that ends its block) leaves that
exception as the thread's handled exception while other tasks run: a later
connection raised an earlier one's cancellation. No module the build
compiles may do it; the parts of the event core that must (a connection's
task group and close) live in ``server/lifecycle.py``, which stays Python.

A module-level name that is not ``Final`` is looked up in the module's
dictionary at each use from compiled code (a ``Final`` one is a C static,
or a literal for ints and strings): the constants of the compiled modules
are ``Final``, which took 7k of 88k instructions off a small request.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tricorn.server import connection as _connection

from ..conftest import COMPILED_CORE

ROOT = Path(__file__).resolve().parents[2]


def compiled_modules() -> list[Path]:
    """The modules setup.py's ``COMPILED`` names."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "COMPILED" for target in node.targets
        ):
            return [ROOT / path for path in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no COMPILED list")


class _Finder(ast.NodeVisitor):
    """Collects the suspensions that happen while an exception is handled."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []
        self._handling = 0  # inside except/finally bodies of the current function

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        outer, self._handling = self._handling, 0  # a nested function runs later
        self.generic_visit(node)
        self._handling = outer

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _try(self, node: ast.Try) -> None:  # (and ast.TryStar, 3.11+: the same fields)
        for statement in (*node.body, *node.orelse):
            self.visit(statement)
        self._handling += 1
        for handler in node.handlers:
            self.visit(handler)
        for statement in node.finalbody:
            self.visit(statement)
        self._handling -= 1

    visit_Try = visit_TryStar = _try

    def visit_Await(self, node: ast.Await) -> None:
        if self._handling:
            self.found.append((node.lineno, "await in an except or finally body"))
        self.generic_visit(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        self.found.append((node.lineno, "async with"))
        self.generic_visit(node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self.found.append((node.lineno, "async for"))  # (awaits after StopAsyncIteration)
        self.generic_visit(node)


def suspensions_while_handling(source: str) -> list[tuple[int, str]]:
    finder = _Finder()
    finder.visit(ast.parse(source))
    return finder.found


def test_setup_compiles_the_event_core_but_not_the_lifecycle():
    names = {path.relative_to(ROOT / "src" / "tricorn").as_posix() for path in compiled_modules()}
    assert {"server/connection.py", "asgi/http.py", "protocol/http1.py"} <= names
    assert "server/lifecycle.py" not in names
    assert all(path.is_file() for path in compiled_modules())


@pytest.mark.parametrize(
    "path", compiled_modules(), ids=lambda path: path.relative_to(ROOT / "src").as_posix()
)
def test_no_compiled_module_awaits_while_handling_an_exception(path: Path):
    found = suspensions_while_handling(path.read_text(encoding="utf-8"))
    assert found == [], f"{path.name}: {found}"


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("async def f():\n    try:\n        pass\n    except E:\n        await g()\n", 5),
        ("async def f():\n    try:\n        pass\n    finally:\n        await g()\n", 5),
        ("async def f():\n    async with g():\n        pass\n", 2),
        ("async def f():\n    async for x in g():\n        pass\n", 2),
        (
            (
                "async def f():\n    try:\n        pass\n    except E:\n"
                "        if x:\n            y = [await g() for _ in z]\n"
            ),
            6,
        ),
    ],
)
def test_the_check_finds_each_kind_of_suspension(source: str, line: int):
    assert [found[0] for found in suspensions_while_handling(source)] == [line]


def test_the_check_allows_awaits_outside_handlers_and_in_functions_defined_there():
    source = (
        "async def f():\n"
        "    try:\n        await g()\n    except E as exc:\n        raised = exc\n"
        "    else:\n        await h()\n"
        "    await policy(raised)\n"
        "    try:\n        pass\n    finally:\n"
        "        async def later():\n            await g()\n"
        "    with scope():\n        await g()\n"
    )
    assert suspensions_while_handling(source) == []


# Names that may be bound without Final: type aliases, and names a function
# rebinds (``global``).
TYPE_ALIASES = frozenset({"Headers", "Event", "Policy"})


def non_final_globals(source: str) -> list[str]:
    """Module-level assignments that are neither Final, a type alias, nor
    rebound by a ``global`` statement."""
    tree = ast.parse(source)
    rebound = {
        name for node in ast.walk(tree) if isinstance(node, ast.Global) for name in node.names
    }
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.value is None or "Final" in ast.unparse(node.annotation):
                continue
            names = [node.target.id]
        else:
            continue
        found += [
            name
            for name in names
            if name not in TYPE_ALIASES and name not in rebound and not name.startswith("__")
        ]
    return found


@pytest.mark.parametrize(
    "path", compiled_modules(), ids=lambda path: path.relative_to(ROOT / "src").as_posix()
)
def test_compiled_modules_bind_their_constants_final(path: Path):
    assert non_final_globals(path.read_text(encoding="utf-8")) == [], path.name


def test_the_final_check_finds_plain_and_annotated_constants():
    source = (
        "A = 1\nB: dict[int, int] = {}\nC: Final = 2\nD: Final[set[int]] = set()\n"
        "Headers = list[int]\n__all__ = []\nE = None\ndef f():\n    global E\n    E = 1\n"
    )
    assert non_final_globals(source) == ["A", "B"]


@pytest.mark.skipif(not COMPILED_CORE, reason="the compiled build's library (not built here)")
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm")
def test_the_compiled_library_exports_its_init_function_alone():
    # setup.py builds with -fvisibility=hidden: calls inside the library are
    # direct, and the dynamic symbol table holds the module's init function
    # (without the flag: one symbol for each of its ~2,500 functions).
    # The compiled modules are shims over one library, which they import
    # as a top-level module named <hash>__mypyc, beside the package (other
    # packages built with mypyc have theirs).
    top = Path(_connection.__file__ or "").parents[2]
    group = [
        m.__file__
        for name, m in sys.modules.items()
        if name.endswith("__mypyc") and Path(m.__file__ or "").parent == top
    ]
    assert len(group) == 1, group
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(group[0])], capture_output=True, text=True, check=True
    ).stdout
    names = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert [n for n in names if not n.startswith("PyInit_")] == [], names[:10]
