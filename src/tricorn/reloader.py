"""``use_reloader`` (``--reload``): notice changed source files.

Theory of operation
-------------------
The supervisor calls :meth:`SourceWatcher.changed` about once a second from
its ``select`` loop and replaces its workers, one by one, when something
changed, appeared or disappeared. ``changed()`` never blocks. Two backends
answer it, with the same rule of which files count (:class:`ReloadFilter`):

* **watchfiles**, when it is installed (``pip install tricorn[reload]``): the
  operating system's file events through its Rust ``notify`` backend. It runs
  in a small *helper process*, forked when the watcher is made (before any
  worker), which writes the changed paths to a pipe; ``changed()`` reads
  whatever is there. Why a process and not a thread: watchfiles always starts
  a native thread, and the supervisor forks its workers; forking a
  multi-threaded process may deadlock the child on a lock some other thread
  held (Python 3.12 warns about it). So the supervisor stays single-threaded
  and the helper, which never forks, holds the threads. The helper exits when
  the supervisor does (it checks its parent four times a second), and if it
  dies the watcher logs a warning and polls from then on.
* **polling** otherwise: one ``stat`` per watched file per call, which suits
  development trees and needs no dependency.

What is watched (uvicorn's settings, with uvicorn's meaning):
``reload_dirs`` (default: the working directory, and the application's
package when it lies elsewhere), files matching ``*.py`` plus
``reload_includes``, minus those matching ``.*``, ``.py[cod]``, ``.sw.*``,
``~*`` plus ``reload_excludes`` (a default pattern named in the other list is
dropped). Patterns are globs matched against the end of the path (``*.toml``,
``templates/*.html``); an include without wildcards (``.env``) counts
whatever the excludes say; an exclude also skips the directories it matches
(``.*`` skips ``.git``), and an exclude naming an existing directory skips
that directory. ``__pycache__``, ``site-packages``, ``node_modules`` and
virtualenvs (a directory holding ``pyvenv.cfg``) are always skipped.
"""

from __future__ import annotations

import atexit
import fnmatch
import glob
import importlib.util
import logging
import os
import re
import select
import signal
import traceback
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePath
from typing import Literal, NoReturn

from .errors import ConfigError

__all__ = [
    "DEFAULT_EXCLUDES",
    "DEFAULT_INCLUDES",
    "ReloadFilter",
    "SourceWatcher",
    "watched_directories",
]

log = logging.getLogger("tricorn.error")

DEFAULT_INCLUDES = ("*.py",)
"""Files that count unless ``reload_excludes`` names the pattern (uvicorn's)."""
DEFAULT_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")
"""Files and directories skipped unless ``reload_includes`` names the pattern
(uvicorn's: hidden files, compiled files, editor swap and backup files)."""

_SKIP_DIRS = frozenset({"__pycache__", "site-packages", "node_modules"})

_READY_TIMEOUT = 10.0  # seconds the helper may take to import watchfiles and start
_TICK_MS = 250  # the helper's longest wait before it checks that its parent lives
_DEBOUNCE_MS = 500  # changes within this are reported together (an editor's save)
_STEP_MS = 50  # ... once no new change has come for this long


def watched_directories(app_path: str, dirs: Sequence[str] = ()) -> list[Path]:
    """The directories to watch: ``dirs`` (``reload_dirs``) when given,
    else the working directory and the directory of the app's module when it
    lies elsewhere (found without importing the module itself). A directory
    inside another one given is dropped (it is watched already).

    :raises ConfigError: a directory of ``dirs`` does not exist.
    """
    if dirs:
        for text in dirs:
            if not Path(text).is_dir():
                raise ConfigError("reload_dirs", list(dirs), "existing directories")
        return _outermost(Path(text).resolve() for text in dirs)
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
        roots.append(origin)
    return _outermost(roots)


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """``paths`` without duplicates and without those inside another one."""
    unique = list(dict.fromkeys(paths))
    return [p for p in unique if not any(other in p.parents for other in unique)]


class _Patterns:
    """Glob patterns matched against the end of a path, as
    :meth:`pathlib.PurePath.match` does; one-part patterns (the usual case)
    are one precompiled regular expression over the name."""

    __slots__ = ("_names", "_paths")

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = list(patterns)
        names = [p for p in patterns if "/" not in p and os.sep not in p]
        self._names = re.compile("|".join(map(fnmatch.translate, names))) if names else None
        self._paths = tuple(p for p in patterns if p not in names)

    def match(self, path: str, name: str) -> bool:
        if self._names is not None and self._names.match(name):
            return True
        return bool(self._paths) and any(PurePath(path).match(p) for p in self._paths)


class ReloadFilter:
    """Which paths under ``roots`` count: the one rule of both backends (see
    the module docstring).

    :param roots: the watched directories, absolute.
    :param includes: ``reload_includes``, added to :data:`DEFAULT_INCLUDES`.
    :param excludes: ``reload_excludes``, added to :data:`DEFAULT_EXCLUDES`.
    """

    def __init__(
        self, roots: Iterable[Path], includes: Sequence[str] = (), excludes: Sequence[str] = ()
    ) -> None:
        self.roots = [str(root) for root in roots]
        self.includes = [p for p in DEFAULT_INCLUDES if p not in excludes] + list(includes)
        self.excludes = [p for p in DEFAULT_EXCLUDES if p not in includes] + list(excludes)
        self._included = _Patterns(self.includes)
        self._excluded = _Patterns(self.excludes)
        self._named = _Patterns(p for p in includes if not glob.has_magic(p))
        self._excluded_dirs = frozenset(
            str(Path(p).resolve()) for p in excludes if Path(p).is_dir()
        )

    def skips_dir(self, path: str, name: str) -> bool:
        """Whether nothing under the directory ``path`` (named ``name``) counts."""
        return (
            name in _SKIP_DIRS
            or self._excluded.match(path, name)
            or path in self._excluded_dirs
            or os.path.exists(os.path.join(path, "pyvenv.cfg"))
        )

    def watches_file(self, path: str, name: str) -> bool:
        """Whether the file ``path`` (named ``name``) counts, its directories
        aside. An include without wildcards (``.env``) names files outright:
        they count whatever the excludes say (as in uvicorn)."""
        if self._named.match(path, name):
            return True
        return self._included.match(path, name) and not self._excluded.match(path, name)

    def __call__(self, change: object, path: str) -> bool:
        """Whether a change of the file ``path`` (absolute) counts: it lies
        under a root, in no skipped directory, and is watched. (The signature
        is watchfiles' ``watch_filter``; ``change`` is not looked at.)"""
        parts = self._parts(path)
        return (
            parts is not None
            and not self._in_skipped_dir(parts[0], parts[1:-1])
            and self.watches_file(path, parts[-1])
        )

    def files_under(self, directory: str) -> Iterator[str]:
        """The files that count in ``directory`` (absolute) and below it."""
        parts = self._parts(directory)
        if parts is None or self._in_skipped_dir(parts[0], parts[1:]):
            return
        for path, subdirs, files in os.walk(directory):
            subdirs[:] = [
                name for name in subdirs if not self.skips_dir(os.path.join(path, name), name)
            ]
            for name in files:
                file = os.path.join(path, name)
                if self.watches_file(file, name):
                    yield file

    def _parts(self, path: str) -> list[str] | None:
        """``[root, name, ...]`` for a path under a root, else None."""
        for root in self.roots:
            relative = os.path.relpath(path, root)
            if relative == os.curdir:
                return [root]
            if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
                return [root, *relative.split(os.sep)]
        return None

    def _in_skipped_dir(self, root: str, names: Sequence[str]) -> bool:
        directory = root
        for name in names:
            directory = os.path.join(directory, name)
            if self.skips_dir(directory, name):
                return True
        return False


class _Poller:
    """Snapshots of the watched files' modification times."""

    def __init__(self, accept: ReloadFilter) -> None:
        self._filter = accept
        self._snapshot = self._scan()

    def changed(self) -> list[str]:
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
        for root in self._filter.roots:
            yield from self._filter.files_under(root)


class _NotifyProcess:
    """watchfiles in a helper process (see the module docstring), seen from
    the parent: its pid and the reading end of its pipe. The pipe carries
    NUL-terminated paths; the first record, empty, says it is watching."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd
        self.gone = False
        """Whether the helper has exited (its pipe reached end of file)."""

    @classmethod
    def start(cls, accept: ReloadFilter) -> _NotifyProcess | None:
        """Fork the helper and wait until it watches; None if it could not."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the helper (covered through its pipe)
            os.close(read_fd)
            _notify_main(accept, write_fd, os.getppid())
        os.close(write_fd)
        helper = cls(pid, read_fd)
        ready, _, _ = select.select([read_fd], [], [], _READY_TIMEOUT)
        if not ready or os.read(read_fd, 1) != b"\0":
            helper.close()
            return None
        os.set_blocking(read_fd, False)
        atexit.register(helper.close)
        return helper

    def changed(self) -> list[str]:
        """The paths reported since the last call (never blocks)."""
        data = b""
        while self.fd >= 0 and not self.gone:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            self.gone = not chunk
            data += chunk
        return sorted({os.fsdecode(path) for path in data.split(b"\0") if path})

    def close(self) -> None:
        """Stop the helper (unless it is gone already) and close the pipe."""
        atexit.unregister(self.close)
        if self.fd < 0:
            return
        if not self.gone:
            os.set_blocking(self.fd, False)
            self.changed()  # notices an exit, so a reused pid is never signalled
        if not self.gone:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass  # reaped already (the supervisor reaps every child)
        os.close(self.fd)
        self.fd = -1


def _notify_main(accept: ReloadFilter, fd: int, parent: int) -> NoReturn:  # pragma: no cover
    """The helper process: report changes on ``fd`` until the parent goes."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the parent decides
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        import watchfiles

        os.set_blocking(fd, False)
        pending = b"\0"  # "watching": sent with the first answer of watchfiles
        for changes in watchfiles.watch(
            *accept.roots,
            watch_filter=None,  # _counted_paths filters (a new directory is no file)
            debounce=_DEBOUNCE_MS,
            step=_STEP_MS,
            rust_timeout=_TICK_MS,
            yield_on_timeout=True,
            raise_interrupt=False,
            ignore_permission_denied=True,
        ):
            if os.getppid() != parent:
                break
            message = pending + _pack(_counted_paths(accept, changes))
            pending = b""
            if message:
                try:
                    os.write(fd, message)
                except BlockingIOError:
                    pass  # unread changes wait in the pipe: a reload comes anyway
        status = 0
    except BrokenPipeError:
        status = 0  # nobody reads any more
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


def _counted_paths(accept: ReloadFilter, changes: Iterable[tuple[int, str]]) -> list[str]:
    """The paths of watchfiles' ``changes`` that count. A directory that
    appeared counts for the files already in it: they may have been written
    before the file system watch on it began (a ``git checkout``, an archive
    unpacked), so no event of theirs may come."""
    from watchfiles import Change

    paths: set[str] = set()
    for change, path in changes:
        if accept(change, path):
            paths.add(path)
        elif change == Change.added and os.path.isdir(path):
            paths.update(accept.files_under(path))
    return sorted(paths)


def _pack(paths: Iterable[str]) -> bytes:
    """NUL-terminated paths, at most ``PIPE_BUF`` bytes so that one write is
    atomic (paths past it are dropped: the change is reported all the same)."""
    message = b""
    for path in paths:
        record = os.fsencode(path)[: select.PIPE_BUF - 2] + b"\0"
        if len(message) + len(record) > select.PIPE_BUF - 1:
            break
        message += record
    return message


class SourceWatcher:
    """Changed files under ``roots``, from watchfiles when it is installed,
    else by polling (see the module docstring). Logs the backend at INFO.

    Resource handling: with watchfiles, the constructor forks the helper
    process (make the watcher while the process has one thread and before
    it forks anything else, so the helper holds nothing else) and waits up
    to 10 s for it to watch; :meth:`close`, or the end of the process, stops
    it. A helper that cannot start or dies means polling, with a warning.

    :param roots: the directories to watch (see :func:`watched_directories`).
    :param includes: ``reload_includes``.
    :param excludes: ``reload_excludes``.
    :param backend: ``"auto"``, or force ``"poll"`` or ``"watchfiles"``.
    """

    def __init__(
        self,
        roots: Iterable[Path],
        *,
        includes: Sequence[str] = (),
        excludes: Sequence[str] = (),
        backend: Literal["auto", "poll", "watchfiles"] = "auto",
    ) -> None:
        self.roots = list(roots)
        self.filter = ReloadFilter(self.roots, includes, excludes)
        self._helper: _NotifyProcess | None = None
        self._poller: _Poller | None = None
        wanted = backend == "watchfiles" or (
            backend == "auto" and importlib.util.find_spec("watchfiles") is not None
        )
        if wanted:
            self._helper = _NotifyProcess.start(self.filter)
            if self._helper is None:
                log.warning("reloader: watchfiles did not start; polling instead")
        if self._helper is None:
            self._poller = _Poller(self.filter)
        log.info(
            "reloader: watching %s for %s (%s)",
            ", ".join(self.filter.roots),
            ", ".join(self.filter.includes),
            f"watchfiles, in process {self._helper.pid}"
            if self._helper
            else "polling once a second",
        )

    @property
    def backend(self) -> Literal["poll", "watchfiles"]:
        """The backend in use now."""
        return "watchfiles" if self._helper is not None else "poll"

    def changed(self) -> list[str]:
        """The files changed, added or removed since the last call."""
        if self._helper is None:
            assert self._poller is not None
            return self._poller.changed()
        paths = self._helper.changed()
        if self._helper.gone:
            log.warning("reloader: the watchfiles process exited; polling from now on")
            self._helper.close()
            self._helper = None
            self._poller = _Poller(self.filter)
        return paths

    def close(self) -> None:
        """Stop the watchfiles helper, if any (also done at exit)."""
        if self._helper is not None:
            self._helper.close()
