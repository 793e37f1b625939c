"""The process level: load the app, bind the sockets once, run the server on
the chosen backend, handle signals, write the pid file.

With ``workers`` 0 or 1 the server runs in this process. Several worker
processes come with the production issue; the structure is ready for them:
the sockets are bound here, before any event loop exists, and handed to
``serve()``.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import anyio

if sys.version_info < (3, 11):  # pragma: no cover - 3.10 only
    # A dependency on 3.10 only; the ignore is for type-checking without it.
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

from . import _backend
from .config import Config
from .errors import ConfigError, StartupFailure
from .logging import configure_logging
from .server.serve import serve
from .sockets import BoundSockets, bind_sockets

__all__ = ["load_app", "run"]

log = logging.getLogger("tricorn.error")


def load_app(path: str) -> Any:
    """Import ``module:attribute`` (``attribute`` defaults to ``app``; a
    trailing ``()`` calls a factory). The working directory is importable.

    :raises ConfigError: the module or attribute does not exist.
    :raises StartupFailure: importing the module raised.
    """
    module_name, _, attr = path.partition(":")
    attr = attr or "app"
    factory = attr.endswith("()")
    attr = attr.removesuffix("()")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError("app", path, f"an importable 'module:attribute' ({exc})") from None
        raise StartupFailure(f"importing {module_name!r} failed: {exc!r}") from exc
    except Exception as exc:
        log.error("importing %r failed", module_name, exc_info=exc)
        raise StartupFailure(f"importing {module_name!r} failed: {exc!r}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                "app", path, f"an attribute of module {module_name!r} (no {part!r} there)"
            ) from None
    return obj() if factory else obj


def run(config: Config) -> int:
    """Serve ``config.app`` until SIGINT/SIGTERM; return the exit status.

    :raises ConfigError: a bad setting found while starting.
    :raises StartupFailure: the server could not start.
    """
    _configure_logging(config)
    path = config.app or config.application_path
    if not path:
        raise ConfigError("app", None, "an application as 'module:attribute' (APP or app = ...)")
    if config.workers > 1:
        log.warning(
            "workers = %d: several workers are not wired yet; serving in-process", config.workers
        )
    app = load_app(path)
    sockets = bind_sockets(config)
    _write_pid(config.pid_path)
    try:
        _backend.run(_serve_until_signal, app, config, sockets, worker_class=config.worker_class)
    except BaseExceptionGroup as group:
        _raise_alone(group)
    finally:
        sockets.close()
        if config.pid_path:
            Path(config.pid_path).unlink(missing_ok=True)
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _configure_logging(config: Config) -> None:
    """Apply the logging settings.

    :raises ConfigError: naming the setting at fault: ``errorlog`` or
        ``accesslog`` (a log file that cannot be opened), else ``logconfig``
        or ``logconfig_dict`` (a logging config that cannot be read or applied).
    """
    try:
        configure_logging(
            loglevel=config.loglevel,
            errorlog=config.errorlog,
            accesslog=config.accesslog,
            logconfig=config.logconfig,
            logconfig_dict=config.logconfig_dict,
            debug=config.debug,
        )
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError):
            for key in ("errorlog", "accesslog"):
                target = getattr(config, key)
                if target not in (None, "-") and _same_file(target, exc.filename):
                    reason = _one_line(f"{exc.strerror or exc}: {exc.filename}")
                    allowed = 'a writable file path, "-" or none'
                    raise ConfigError(key, target, allowed, reason) from exc
        # What is left comes from the logging config (logconfig wins over
        # logconfig_dict, as in Hypercorn, so only one of them was applied).
        if config.logconfig is not None:
            allowed = 'an ini file, "json:PATH" or "toml:PATH" that logging.config can apply'
            raise ConfigError("logconfig", config.logconfig, allowed, _one_line(str(exc))) from exc
        allowed = "a logging.config.dictConfig schema"
        raise ConfigError(
            "logconfig_dict", config.logconfig_dict, allowed, _one_line(str(exc))
        ) from exc


def _same_file(path: str, filename: object) -> bool:
    if not isinstance(filename, str):
        return False
    return os.path.abspath(path) == os.path.abspath(filename)


def _raise_alone(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the ConfigError or StartupFailure that task groups wrapped, by
    itself, so ``cli.main`` reports it in one line; re-raise anything else."""
    wanted, rest = group.split((ConfigError, StartupFailure))
    if wanted is None or rest is not None:
        raise group
    error: BaseException = wanted
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    raise error from None


def _write_pid(pid_path: str | None) -> None:
    if pid_path:
        Path(pid_path).write_text(f"{os.getpid()}\n")


async def _serve_until_signal(app: Any, config: Config, sockets: BoundSockets) -> None:
    """Serve; the first SIGINT/SIGTERM starts a graceful shutdown, a second
    one cancels everything at once."""
    shutdown = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    if shutdown.is_set():
                        log.info("second %s: stopping now", signal.Signals(signum).name)
                        tg.cancel_scope.cancel()
                        return
                    log.info("%s received: shutting down", signal.Signals(signum).name)
                    shutdown.set()

        tg.start_soon(watch_signals)
        await serve(
            app,
            config,
            sockets=sockets,
            shutdown_trigger=shutdown.wait,
            io=_backend,
        )
        tg.cancel_scope.cancel()
