"""The reloader's file polling."""

from __future__ import annotations

import os
from pathlib import Path

from tricorn.reloader import SourceWatcher


def touch(path: Path, text: str, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_changed_added_and_removed_files(tmp_path: Path) -> None:
    touch(tmp_path / "app.py", "a = 1", 1_000_000_000)
    touch(tmp_path / "pkg" / "mod.py", "b = 1", 1_000_000_000)
    touch(tmp_path / "notes.txt", "x", 1_000_000_000)
    watcher = SourceWatcher([tmp_path])
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


def test_caches_hidden_directories_and_virtualenvs_are_skipped(tmp_path: Path) -> None:
    watcher = SourceWatcher([tmp_path])
    touch(tmp_path / "__pycache__" / "x.py", "", 1)
    touch(tmp_path / ".git" / "hook.py", "", 1)
    touch(tmp_path / "lib" / "site-packages" / "dep.py", "", 1)
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr")
    touch(tmp_path / "venv" / "lib" / "dep.py", "", 1)
    assert watcher.changed() == []
