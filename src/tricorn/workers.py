"""The process level: bind the sockets once, run the server on the chosen
backend in this process (``workers = 0``) or in supervised worker processes
(``workers >= 1``, :mod:`tricorn.supervisor`), handle signals, write the pid
file.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
from anyio.abc import TaskStatus

if sys.version_info < (3, 11):  # pragma: no cover - 3.10 only
    # A dependency on 3.10 only; the ignore is for type-checking without it.
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

from . import _backend
from .asgi.app import as_asgi3
from .config import Config
from .errors import ConfigError, StartupFailure
from .logging import configure_logging
from .server.serve import serve
from .sockets import BoundSockets, bind_sockets

if TYPE_CHECKING:
    from .metrics import MetricsRecorder  # (the supervisor's, with metrics_bind only)

__all__ = ["load_app", "run", "serve_in_process"]

log = logging.getLogger("tricorn.error")


def load_app(path: str) -> Any:
    """Import ``module:attribute`` (``attribute`` defaults to ``app``; a
    trailing ``()`` calls a factory). The working directory is importable.

    A ``wsgi:`` or ``asgi:`` prefix (``wsgi:module:attribute``, as in
    Hypercorn) forces the kind of application: the result is then wrapped
    in :class:`~tricorn.asgi.wsgi.WSGIApp` or made ASGI 3, so ``serve()``
    does not detect it. Without one, ``serve()`` detects it.

    :raises ConfigError: the module or attribute does not exist, or the
        prefix is neither ``wsgi`` nor ``asgi``.
    :raises StartupFailure: importing the module raised.
    """
    mode, target = _split_mode(path)
    obj = _import_app(target, path)
    if mode == "wsgi":
        from .asgi.wsgi import WSGIApp  # (only WSGI apps need it and its thread bridge)

        return WSGIApp(obj)
    if mode == "asgi":
        return as_asgi3(obj)
    return obj


def _split_mode(path: str) -> tuple[str | None, str]:
    """``("wsgi", "module:app")`` from ``"wsgi:module:app"``; a prefix is
    only read before ``module:attribute`` (``"wsgi:app"`` is module ``wsgi``)."""
    if path.count(":") < 2:
        return None, path
    mode, _, rest = path.partition(":")
    if mode not in ("wsgi", "asgi"):
        raise ConfigError("app", path, "module:attribute, optionally after 'wsgi:' or 'asgi:'")
    return mode, rest


def _import_app(target: str, path: str) -> Any:
    """Import ``target`` (``module:attribute``); errors name ``path``, as given."""
    module_name, _, attr = target.partition(":")
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


def run(config: Config, reload_config: Callable[[], Config] | None = None) -> int:
    """Serve ``config.app`` until SIGINT/SIGTERM; return the exit status.

    :param reload_config: reads the configuration again (SIGHUP, with
        workers); ``None``: SIGHUP restarts the workers with ``config``.
    :raises ConfigError: a bad setting found while starting.
    :raises StartupFailure: the server could not start.
    """
    _configure_logging(config)
    path = config.app or config.application_path
    if not path:
        raise ConfigError("app", None, "an application as 'module:attribute' (APP or app = ...)")
    if config.use_reloader and config.workers == 0:
        raise ConfigError(
            "use_reloader", True, "false with workers = 0 (the reloader replaces workers)"
        )
    if config.workers >= 1:
        from .supervisor import Supervisor

        return Supervisor(config, reload_config).run()
    app = load_app(path)
    sockets = bind_sockets(config)
    _write_pid(config.pid_path)
    try:
        serve_in_process(app, config, sockets)
    finally:
        sockets.close()
        if config.pid_path:
            Path(config.pid_path).unlink(missing_ok=True)
    return 0


def serve_in_process(
    app: Any,
    config: Config,
    sockets: BoundSockets,
    *,
    ready: Callable[[], None] | None = None,
    worker: bool = False,
    metrics: MetricsRecorder | None = None,
) -> None:
    """Run the server on ``config.worker_class`` until SIGTERM (and SIGINT,
    unless this is a ``worker`` process, whose supervisor relays it).

    :param ready: called once the server listens.
    :param metrics: this worker's cells of the supervisor's metrics.
    :raises ConfigError: a bad setting found while starting.
    :raises StartupFailure: the server could not start.
    """
    try:
        _backend.run(
            _serve_until_signal,
            app,
            config,
            sockets,
            ready,
            worker,
            metrics,
            worker_class=config.worker_class,
        )
    except BaseExceptionGroup as group:
        _raise_alone(group)


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


async def _serve_until_signal(
    app: Any,
    config: Config,
    sockets: BoundSockets,
    ready: Callable[[], None] | None,
    worker: bool,
    metrics: MetricsRecorder | None,
) -> None:
    """Serve until a signal says stop.

    SIGTERM (and SIGINT, in one process) starts a graceful shutdown; SIGQUIT
    stops at once. In one process a second SIGTERM or SIGINT stops at once
    too, and SIGHUP is refused with a warning (reloading needs worker
    processes) rather than killing the server. A worker ignores a second
    SIGTERM: a service manager that signals the whole process group
    (systemd's ``KillMode=control-group``, ``kill -TERM -PGID``) sends one
    besides the supervisor's, and that must not cut requests short. The
    supervisor says "now" with SIGQUIT.
    """
    shutdown = anyio.Event()
    watched: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGQUIT)
    if not worker:
        watched += (signal.SIGINT, signal.SIGHUP)
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(*watched) as signals:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if signum == signal.SIGHUP:
                        log.warning("SIGHUP ignored: reloading needs workers >= 1")
                    elif signum == signal.SIGQUIT or (shutdown.is_set() and not worker):
                        second = "second " if signum != signal.SIGQUIT else ""
                        log.info("%s%s: stopping now", second, name)
                        tg.cancel_scope.cancel()
                        return
                    elif shutdown.is_set():
                        log.debug("%s again: still shutting down gracefully", name)
                    else:
                        log.info("%s received: shutting down", name)
                        shutdown.set()

        async def serving(*, task_status: TaskStatus[list[str]]) -> None:
            await serve(
                app,
                config,
                sockets=sockets,
                shutdown_trigger=shutdown.wait,
                io=_backend,
                metrics=metrics,
                task_status=task_status,
            )
            tg.cancel_scope.cancel()

        tg.start_soon(watch_signals)
        await tg.start(serving)
        if ready is not None:
            ready()
