"""``use_reloader`` (``--reload``): notice changed source files by polling.

A :class:`SourceWatcher` remembers the modification time of every ``.py``
file under the watched directories (the working directory and the
directory of the application's module), skipping hidden directories,
``__pycache__`` and installed packages (``site-packages``, virtualenvs).
:meth:`SourceWatcher.changed` looks again; the supervisor calls it about
once a second and replaces its workers, one by one, when something changed,
added or removed. Polling costs one ``stat`` per file per second, which
suits development trees; it needs no extra dependency.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["SourceWatcher", "watched_directories"]

_SKIP_DIRS = frozenset({"__pycache__", "site-packages", "node_modules"})


def watched_directories(app_path: str) -> list[Path]:
    """The working directory, and the directory of the app's module when it
    lies elsewhere (found without importing the module itself)."""
    roots = [Path.cwd()]
    module = app_path.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and spec.origin.endswith(".py"):
        origin = Path(spec.origin).resolve().parent
        if spec.submodule_search_locations is None and "." in module:
            origin = origin.parent  # a module inside a package: watch the package
        if not any(origin == root or root in origin.parents for root in roots):
            roots.append(origin)
    return roots


class SourceWatcher:
    """Snapshots of ``.py`` modification times under ``roots``."""

    def __init__(self, roots: Iterable[Path]) -> None:
        self.roots = list(roots)
        self._snapshot = self._scan()

    def changed(self) -> list[str]:
        """The files changed, added or removed since the last call."""
        current = self._scan()
        previous, self._snapshot = self._snapshot, current
        if current == previous:
            return []
        return sorted(
            path
            for path in current.keys() | previous.keys()
            if current.get(path) != previous.get(path)
        )

    def _scan(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for path in self._files():
            try:
                found[path] = os.stat(path).st_mtime_ns
            except OSError:
                continue  # removed meanwhile
        return found

    def _files(self) -> Iterator[str]:
        for root in self.roots:
            for directory, subdirs, files in os.walk(root):
                subdirs[:] = [
                    name
                    for name in subdirs
                    if not name.startswith(".")
                    and name not in _SKIP_DIRS
                    and not os.path.exists(os.path.join(directory, name, "pyvenv.cfg"))
                ]
                for name in files:
                    if name.endswith(".py"):
                        yield os.path.join(directory, name)
