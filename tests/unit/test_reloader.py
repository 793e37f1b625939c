"""The reloader: which files count (one filter), and both backends, polling
and watchfiles (in its helper process)."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tricorn.errors import ConfigError
from tricorn.reloader import ReloadFilter, SourceWatcher, watched_directories


def touch(path: Path, text: str = "", mtime_ns: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


# ---------------------------------------------------------------- the filter


@pytest.mark.parametrize(
    ("relative", "includes", "excludes", "counts"),
    [
        ("app.py", (), (), True),
        ("pkg/deep/mod.py", (), (), True),
        ("notes.txt", (), (), False),
        ("settings.toml", ("*.toml",), (), True),
        ("templates/page.html", ("templates/*.html",), (), True),
        ("other/page.html", ("templates/*.html",), (), False),
        (".hidden.py", (), (), False),  # default exclude .*
        ("~backup.py", (), (), False),  # default exclude ~*
        (".git/hooks/hook.py", (), (), False),  # .* skips the directory
        ("__pycache__/x.py", (), (), False),
        ("lib/site-packages/dep.py", (), (), False),
        ("node_modules/x.py", (), (), False),
        ("generated.py", (), ("generated.py",), False),
        ("build/out.py", (), ("build",), False),  # a directory pattern
        ("src/build/out.py", (), ("build",), False),
        ("data/sub/x.py", (), ("data/*",), False),
        ("app.py", (), ("*.py",), False),  # a default include dropped
        (".env", (".env",), (), True),  # named outright: counts despite .*
        (".secret.py", (".*",), (), True),  # a default exclude dropped
        (".git/hooks/hook.py", (".*",), (), True),
    ],
)
def test_which_files_count(
    tmp_path: Path,
    relative: str,
    includes: tuple[str, ...],
    excludes: tuple[str, ...],
    counts: bool,
) -> None:
    accept = ReloadFilter([tmp_path], includes, excludes)
    assert accept(None, str(tmp_path / relative)) is counts


def test_virtualenvs_and_existing_excluded_directories_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr")
    (tmp_path / "out").mkdir()
    accept = ReloadFilter([tmp_path], (), (str(tmp_path / "out"),))
    assert not accept(None, str(tmp_path / "venv" / "lib" / "dep.py"))
    assert not accept(None, str(tmp_path / "out" / "x.py"))
    assert accept(None, str(tmp_path / "outside.py"))


def test_paths_outside_every_root_do_not_count(tmp_path: Path) -> None:
    accept = ReloadFilter([tmp_path / "a"])
    assert not accept(None, str(tmp_path / "b" / "x.py"))
    assert not accept(None, str(tmp_path / "a-b" / "x.py"))
    assert accept(None, str(tmp_path / "a" / "x.py"))


def test_reload_dirs_replace_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "conf").mkdir()
    dirs = [str(tmp_path / "src"), str(tmp_path / "src" / "pkg"), str(tmp_path / "conf")]
    assert watched_directories("examples.hello:app", dirs) == [
        tmp_path / "src",  # pkg is inside src: watched already
        tmp_path / "conf",
    ]
    assert watched_directories("examples.hello:app") == [Path.cwd()]


def test_a_missing_reload_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        watched_directories("a:b", [str(tmp_path / "nope")])
    assert info.value.key == "reload_dirs"
    assert "existing directories" in info.value.line()


# ---------------------------------------------------------------- polling


def test_polling_sees_changed_added_and_removed_files(tmp_path: Path) -> None:
    touch(tmp_path / "app.py", "a = 1", 1_000_000_000)
    touch(tmp_path / "pkg" / "mod.py", "b = 1", 1_000_000_000)
    touch(tmp_path / "notes.txt", "x", 1_000_000_000)
    watcher = SourceWatcher([tmp_path], backend="poll")
    assert watcher.backend == "poll"
    assert watcher.changed() == []
    touch(tmp_path / "app.py", "a = 2", 2_000_000_000)
    assert watcher.changed() == [str(tmp_path / "app.py")]
    assert watcher.changed() == []  # reported once
    touch(tmp_path / "pkg" / "new.py", "", 3_000_000_000)
    (tmp_path / "pkg" / "mod.py").unlink()
    assert watcher.changed() == sorted(
        [str(tmp_path / "pkg" / "mod.py"), str(tmp_path / "pkg" / "new.py")]
    )
    touch(tmp_path / "notes.txt", "y", 4_000_000_000)  # not Python: ignored
    assert watcher.changed() == []


def test_polling_skips_caches_hidden_directories_and_virtualenvs(tmp_path: Path) -> None:
    watcher = SourceWatcher([tmp_path], backend="poll")
    touch(tmp_path / "__pycache__" / "x.py", "", 1)
    touch(tmp_path / ".git" / "hook.py", "", 1)
    touch(tmp_path / "lib" / "site-packages" / "dep.py", "", 1)
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr")
    touch(tmp_path / "venv" / "lib" / "dep.py", "", 1)
    assert watcher.changed() == []


def test_polling_with_includes_and_excludes(tmp_path: Path) -> None:
    touch(tmp_path / "settings.toml", "a = 1", 1_000_000_000)
    touch(tmp_path / "build" / "out.py", "", 1_000_000_000)
    watcher = SourceWatcher([tmp_path], includes=["*.toml"], excludes=["build"], backend="poll")
    touch(tmp_path / "build" / "out.py", "x = 1", 2_000_000_000)  # excluded
    assert watcher.changed() == []
    touch(tmp_path / "settings.toml", "a = 2", 2_000_000_000)  # included, not .py
    assert watcher.changed() == [str(tmp_path / "settings.toml")]


def test_the_backend_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tricorn.error"):
        SourceWatcher([tmp_path], includes=["*.toml"], backend="poll")
    (record,) = caplog.records
    assert record.getMessage() == (
        f"reloader: watching {tmp_path} for *.py, *.toml (polling once a second)"
    )


# ---------------------------------------------------------------- watchfiles

# The test extra installs watchfiles; without it only these tests are skipped.
needs_watchfiles = pytest.mark.skipif(
    importlib.util.find_spec("watchfiles") is None, reason="watchfiles is not installed"
)


@pytest.fixture
def notify_watcher(tmp_path: Path) -> Iterator[Callable[..., SourceWatcher]]:
    made: list[SourceWatcher] = []

    def make(**kwargs: object) -> SourceWatcher:
        watcher = SourceWatcher([tmp_path], backend="watchfiles", **kwargs)  # type: ignore[arg-type]
        made.append(watcher)
        assert watcher.backend == "watchfiles"
        return watcher

    yield make
    for watcher in made:
        watcher.close()


def collect(watcher: SourceWatcher, until: Callable[[set[str]], bool]) -> set[str]:
    """Every path reported until ``until`` holds (or 10 s pass)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while not until(seen) and time.monotonic() < deadline:
        seen.update(watcher.changed())
        time.sleep(0.05)
    return seen


@needs_watchfiles
def test_watchfiles_reports_a_change_without_blocking(
    tmp_path: Path, notify_watcher: Callable[..., SourceWatcher]
) -> None:
    watcher = notify_watcher()
    started = time.monotonic()
    assert watcher.changed() == []
    assert time.monotonic() - started < 0.1  # never waits for the helper
    touch(tmp_path / "pkg" / "mod.py", "x = 1")
    path = str(tmp_path / "pkg" / "mod.py")
    assert path in collect(watcher, lambda seen: path in seen)


@needs_watchfiles
def test_watchfiles_uses_the_same_filter(
    tmp_path: Path, notify_watcher: Callable[..., SourceWatcher]
) -> None:
    watcher = notify_watcher(includes=["*.toml"], excludes=["build"])
    touch(tmp_path / "build" / "out.py", "x = 1")  # excluded
    touch(tmp_path / "notes.txt", "x")  # not included
    touch(tmp_path / ".hidden.py")  # default exclude
    touch(tmp_path / "settings.toml", "a = 1")  # included, not .py
    toml = str(tmp_path / "settings.toml")
    assert collect(watcher, lambda seen: toml in seen) == {toml}
    time.sleep(1.0)  # (longer than the helper's debounce: a late batch is in)
    assert watcher.changed() == []


@needs_watchfiles
def test_a_new_directory_counts_for_the_files_already_in_it(tmp_path: Path) -> None:
    from watchfiles import Change

    from tricorn.reloader import _counted_paths

    touch(tmp_path / "pkg" / "a.py")
    touch(tmp_path / "pkg" / "sub" / "b.py")
    touch(tmp_path / "pkg" / "notes.txt")
    touch(tmp_path / "pkg" / "__pycache__" / "c.py")
    touch(tmp_path / ".git" / "d.py")
    accept = ReloadFilter([tmp_path])
    changes = {
        (Change.added, str(tmp_path / "pkg")),
        (Change.added, str(tmp_path / ".git")),  # a skipped directory
        (Change.modified, str(tmp_path / "pkg" / "sub")),  # not new: not walked
        (Change.deleted, str(tmp_path / "gone.py")),
    }
    assert _counted_paths(accept, changes) == [
        str(tmp_path / "gone.py"),
        str(tmp_path / "pkg" / "a.py"),
        str(tmp_path / "pkg" / "sub" / "b.py"),
    ]


@needs_watchfiles
def test_watchfiles_process_stops_with_close(notify_watcher: Callable[..., SourceWatcher]) -> None:
    watcher = notify_watcher()
    helper = watcher._helper
    assert helper is not None
    watcher.close()
    with pytest.raises(ProcessLookupError):
        os.kill(helper.pid, 0)  # stopped and reaped


@needs_watchfiles
def test_a_dead_helper_falls_back_to_polling(
    tmp_path: Path,
    notify_watcher: Callable[..., SourceWatcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher = notify_watcher()
    helper = watcher._helper
    assert helper is not None
    os.kill(helper.pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="tricorn.error"):
        deadline = time.monotonic() + 10
        while watcher.backend == "watchfiles" and time.monotonic() < deadline:
            watcher.changed()
            time.sleep(0.02)
    assert watcher.backend == "poll"
    assert "polling from now on" in caplog.text
    touch(tmp_path / "app.py", "", 5_000_000_000)
    assert watcher.changed() == [str(tmp_path / "app.py")]


def running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@needs_watchfiles
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_the_helper_exits_when_its_parent_dies(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from tricorn.reloader import SourceWatcher\n"
        f"watcher = SourceWatcher([Path({str(tmp_path)!r})], backend='watchfiles')\n"
        "print(watcher._helper.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    pid = int(done.stdout)
    deadline = time.monotonic() + 10
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid)
