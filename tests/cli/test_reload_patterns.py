"""``--reload`` with ``--reload-dir`` and ``--reload-include``: a change to an
included file that is not Python replaces the workers."""

from __future__ import annotations

from pathlib import Path

from .test_cli_serve import free_port, tricorn, write_app
from .test_workers import children, get_body, reloader_helpers, wait_for

SETTINGS_APP = """
    from pathlib import Path

    BODY = Path(__file__).with_name("settings.toml").read_bytes()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": BODY})
"""


def test_reload_include_watches_a_toml_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    env = write_app(site, "settings_app", SETTINGS_APP)
    (site / "settings.toml").write_text("one")
    port = free_port()
    args = (
        *("settings_app:app", "-b", f"127.0.0.1:{port}", "-w", "1", "--reload"),
        *("--reload-dir", str(site), "--reload-include", "*.toml"),
    )
    with tricorn(tmp_path, *args, env=env) as child:
        child.wait_listening(port)
        assert get_body(port) == b"one"
        before = children(child.proc.pid) - reloader_helpers(child.stderr())
        (site / "settings.toml").write_text("two")
        wait_for(lambda: get_body(port) == b"two", timeout=20)
        wait_for(lambda: not children(child.proc.pid) & before)
        assert child.terminate() == 0, child.stderr()
    stderr = child.stderr()
    assert f"reloader: watching {site} for *.py, *.toml" in stderr
    assert "settings.toml changed: reloading" in stderr
