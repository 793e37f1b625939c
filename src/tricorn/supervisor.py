"""Worker processes: the parent binds every socket once and keeps N workers
serving on them (``workers >= 1``).

Theory of operation
-------------------
The parent never runs an event loop and never imports the application. It
binds the sockets (:func:`tricorn.sockets.bind_sockets`; with
``quic_bind``, one UDP socket per worker and per address, routed by
connection ID), writes ``pid_path``, and forks one process per worker
*slot*. A worker loads the application, serves on the inherited sockets
(its own UDP socket of each QUIC group), and reports readiness by writing
one byte to a pipe once it listens.

The parent's loop waits in ``select`` for a signal (through
``signal.set_wakeup_fd``), a readiness byte, or the next scheduled restart,
and reaps children on every turn:

* **A worker exits unasked** (crash, kill, OOM): logged at WARNING with
  its status, and restarted in the same slot after a backoff (0.1 s,
  doubling up to 10 s; reset once a worker has served for 30 s). The other
  workers keep serving meanwhile. A worker that retires at
  ``max_requests`` exits 0 and is replaced at once.
* **Startup failures are fatal** when no worker ever became ready: a
  worker exiting with status 2 (configuration) or 3 (startup) before
  anyone served stops the server with that status, as ``workers = 0``
  would. Later, a worker that fails to start again after a crash (the code
  on disk broke meanwhile) is retried with the backoff while the other
  workers serve; the new worker of a SIGHUP reload that fails to start
  ends the reload, and the old workers keep serving.
* **SIGTERM / SIGINT**: every worker gets SIGTERM and drains (its listeners
  close first, in-flight requests finish within ``graceful_timeout``, then
  the lifespan shutdown runs within ``shutdown_timeout``); the parent waits
  that long plus a margin, then SIGKILLs what is left. A second signal, or
  SIGQUIT, sends the workers SIGQUIT, which stops them at once. Workers
  ignore a repeated SIGTERM, so a service manager that signals the whole
  process group does not cut requests short.
* **SIGHUP**: the configuration is read again (a bad file is logged and
  changes nothing) and the workers are replaced one slot at a time: the
  new worker starts with the new settings and certificates, and only once
  it listens is the old one told to drain. No request fails; new TLS and
  QUIC handshakes get the new certificate. Binds do not change on reload.
* **use_reloader**: about once a second the source files are polled
  (:mod:`tricorn.reloader`); a change is a SIGHUP.
* **SIGTTIN / SIGTTOU**: one worker more / fewer (not with ``quic_bind``:
  the routing program's modulus is fixed at startup).

Workers ignore SIGINT and SIGHUP (a terminal's Ctrl-C reaches the whole
process group; the parent decides) and react to SIGTERM only.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from .config import Config
from .errors import ConfigError, StartupFailure
from .metrics import MetricsApp, MetricsRegistry, metrics_config
from .reloader import SourceWatcher, watched_directories
from .sockets import BoundSockets, bind_sockets
from .workers import load_app, serve_in_process

__all__ = ["Supervisor"]

log = logging.getLogger("tricorn.error")

_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)
_BACKOFF_FIRST = 0.1  # seconds before restarting a crashed worker
_BACKOFF_MAX = 10.0
_HEALTHY_AFTER = 30.0  # a worker that served this long resets its slot's backoff
_KILL_MARGIN = 5.0  # after graceful_timeout + shutdown_timeout, before SIGKILL
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_CONFIG = 2
EXIT_STARTUP = 3
METRICS_SLOT = -1  # the process serving metrics_bind


@dataclasses.dataclass(eq=False)
class _Worker:
    slot: int
    pid: int
    ready_fd: int  # read end of the readiness pipe (-1 once read or closed)
    started: float
    ready: bool = False
    stopping: bool = False  # we asked it to stop: its exit is expected
    block: int | None = None  # its cells in the metrics registry

    @property
    def name(self) -> str:
        return "the metrics server" if self.slot == METRICS_SLOT else f"worker {self.slot}"


class Supervisor:
    """Run and keep ``config.workers`` worker processes (see the module
    docstring).

    :param config: the settings.
    :param reload_config: reads the configuration again on SIGHUP.
    """

    def __init__(self, config: Config, reload_config: Callable[[], Config] | None) -> None:
        self.config = config
        self._reload_config = reload_config
        self._slots = config.workers
        self._workers: dict[int, _Worker] = {}  # by pid
        self._backoff: dict[int, float] = {}  # slot -> next delay
        self._restart_at: dict[int, float] = {}  # slot -> when to start it again
        self._rolling: list[int] = []  # slots still to replace (SIGHUP)
        self._replacing: _Worker | None = None  # the new worker of a rolling step
        self._ever_ready = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._status = 0
        self._pending: list[int] = []
        self._sockets: BoundSockets | None = None
        self._metrics: MetricsRegistry | None = None
        self._metrics_sockets: BoundSockets | None = None
        self._quic_groups = bool(config.quic_bind)
        self._watcher: SourceWatcher | None = None
        if config.use_reloader:
            path = config.app or config.application_path
            assert path is not None
            self._watcher = SourceWatcher(
                watched_directories(path, config.reload_dirs),
                includes=config.reload_includes,
                excludes=config.reload_excludes,
            )

    # ------------------------------------------------------------ main loop

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status."""
        config = self.config
        copies = config.workers if self._quic_groups else 1
        self._sockets = bind_sockets(config, quic_copies=copies)
        if config.metrics_bind is not None:
            try:
                self._metrics_sockets = bind_sockets(metrics_config(config))
            except BaseException:
                self._sockets.close()
                raise
            # Room for every worker, a replacement of each during a reload,
            # and SIGTTIN; an unused block costs address space only.
            self._metrics = MetricsRegistry(4 * config.workers + 16)
        if config.pid_path:
            Path(config.pid_path).write_text(f"{os.getpid()}\n")
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in _SIGNALS}
        old_wakeup = signal.set_wakeup_fd(wake_w)
        self._wake = (wake_r, wake_w)
        try:
            if self._metrics is not None:
                self._start(METRICS_SLOT, config)
            for slot in range(self._slots):
                self._start(slot, config)
            while self._workers or not self._stopping:
                self._turn(wake_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)
            self._sockets.close()
            if self._metrics_sockets is not None:
                self._metrics_sockets.close()
            if config.pid_path:
                Path(config.pid_path).unlink(missing_ok=True)
        return self._status

    def _on_signal(self, signum: int, frame: object) -> None:
        self._pending.append(signum)

    def _turn(self, wake_r: int) -> None:
        """Wait for something to do, then do it."""
        now = time.monotonic()
        timeout = 1.0
        if self._restart_at:
            timeout = max(0.0, min(timeout, min(self._restart_at.values()) - now))
        if self._stopping:
            timeout = max(0.0, min(timeout, self._stop_deadline - now))
        readable = [wake_r] + [w.ready_fd for w in self._workers.values() if w.ready_fd >= 0]
        try:
            ready, _, _ = select.select(readable, [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries select
            ready = []
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        pending, self._pending = self._pending, []
        for signum in pending:
            self._signal(signum)
        for worker in list(self._workers.values()):
            if worker.ready_fd in ready:
                self._readiness(worker)
        self._reap()
        if self._watcher is not None and not self._stopping and not self._rolling:
            changed = self._watcher.changed()
            if changed:
                log.info("%s changed: reloading", changed[0] if len(changed) == 1 else changed)
                self._reload()
        now = time.monotonic()
        for slot, when in list(self._restart_at.items()):
            if when <= now and not self._stopping:
                del self._restart_at[slot]
                self._start(slot, self.config)
        if self._stopping and now >= self._stop_deadline:
            for worker in self._workers.values():
                log.warning("%s (pid %d) did not stop: killing it", worker.name, worker.pid)
                _kill(worker.pid, signal.SIGKILL)
            self._stop_deadline = now + _KILL_MARGIN
        if self._metrics is not None:
            self._metrics.set_workers(sum(w.slot != METRICS_SLOT for w in self._workers.values()))

    # ------------------------------------------------------------ signals

    def _signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # reaped every turn
        name = signal.Signals(signum).name
        if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            now = self._stopping or signum == signal.SIGQUIT
            if now:
                second = "second " if signum != signal.SIGQUIT else ""
                log.info("%s%s: stopping the workers now", second, name)
            else:
                log.info("%s received: shutting down", name)
            self._stop(now)
        elif self._stopping:
            return
        elif signum == signal.SIGHUP:
            self._reload()
        elif signum == signal.SIGTTIN:
            self._resize(+1)
        elif signum == signal.SIGTTOU:
            self._resize(-1)

    def _stop(self, now: bool = False) -> None:
        """Tell every worker to drain (SIGTERM), or with ``now`` to stop at
        once (SIGQUIT); close our copies of the listening sockets."""
        if not self._stopping:
            self._stopping = True
            self._restart_at.clear()
            self._rolling.clear()
            config = self.config
            wait = config.graceful_timeout + config.shutdown_timeout + _KILL_MARGIN
            self._stop_deadline = time.monotonic() + wait
        for worker in self._workers.values():
            worker.stopping = True
            _kill(worker.pid, signal.SIGQUIT if now else signal.SIGTERM)
        if self._sockets is not None:
            # The workers close theirs as they start draining; with ours
            # closed too, new connections are refused from now on.
            self._sockets.close()

    def _reload(self) -> None:
        if self._rolling or self._replacing is not None:
            log.info("SIGHUP: a reload is in progress already")
            return
        if self._reload_config is not None:
            try:
                config = self._reload_config()
            except ConfigError as err:
                log.error("SIGHUP: the configuration was not reloaded: %s", err.line())
                return
            if _binds(config) != _binds(self.config):
                log.warning("SIGHUP: changed binds take effect at the next start only")
            self.config = dataclasses.replace(
                config,
                bind=self.config.bind,
                insecure_bind=self.config.insecure_bind,
                quic_bind=self.config.quic_bind,
                metrics_bind=self.config.metrics_bind,
                workers=self._slots,
            )
        log.info("SIGHUP: replacing %d worker(s) one by one", self._slots)
        self._rolling = sorted(self._slot_workers())
        self._next_rolling()

    def _next_rolling(self) -> None:
        """Start the replacement of the next slot; its old worker is told to
        stop once the new one listens."""
        while self._rolling:
            slot = self._rolling.pop(0)
            if slot in self._slot_workers():
                self._replacing = self._start(slot, self.config)
                return
        self._replacing = None
        log.info("reload done")

    def _resize(self, delta: int) -> None:
        if self._quic_groups:
            log.warning("worker count is fixed while quic_bind is set (QUIC routing)")
            return
        if delta > 0:
            self._slots += 1
            log.info("SIGTTIN: %d worker(s)", self._slots)
            self._start(self._slots - 1, self.config)
        elif self._slots > 1:
            self._slots -= 1
            log.info("SIGTTOU: %d worker(s)", self._slots)
            self._restart_at.pop(self._slots, None)
            for worker in self._workers.values():
                if worker.slot == self._slots:
                    worker.stopping = True
                    _kill(worker.pid, signal.SIGTERM)

    def _slot_workers(self) -> dict[int, _Worker]:
        return {w.slot: w for w in self._workers.values() if not w.stopping}

    # ------------------------------------------------------------ workers

    def _start(self, slot: int, config: Config) -> _Worker:
        assert self._sockets is not None
        block = None
        if self._metrics is not None and slot != METRICS_SLOT:
            block = self._metrics.acquire()
            if block is None:
                log.warning("worker %d is not counted in the metrics: no room left", slot)
        ready_r, ready_w = os.pipe()
        # Signals wait until the child has its own handlers: one that came
        # before (a SIGTERM from a SIGTTOU right after the SIGTTIN that
        # started it) went to the supervisor's handler inherited by the
        # fork, and the child never stopped. Signals sent to the
        # supervisor meanwhile are delivered to it once unblocked.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child (covered by subprocess tests)
                os.close(ready_r)
                self._child(slot, block, config, ready_w)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        os.close(ready_w)
        worker = _Worker(slot, pid, ready_r, time.monotonic(), block=block)
        self._workers[pid] = worker
        log.debug("%s started (pid %d)", worker.name, pid)
        return worker

    def _child(  # pragma: no cover - runs in the child
        self, slot: int, block: int | None, config: Config, ready_w: int
    ) -> NoReturn:
        """The worker process (or the metrics server): serve until SIGTERM,
        then exit."""
        status = 0
        try:
            _die_with_parent()
            signal.set_wakeup_fd(-1)
            for fd in self._wake:
                os.close(fd)
            for worker in self._workers.values():
                if worker.ready_fd >= 0:
                    os.close(worker.ready_fd)
            for signum in _SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)  # (blocked by _start)
            assert self._sockets is not None

            def ready() -> None:
                os.write(ready_w, b"1")
                os.close(ready_w)

            if slot == METRICS_SLOT:
                assert self._metrics is not None
                assert self._metrics_sockets is not None
                self._sockets.close()
                app: object = MetricsApp(self._metrics)
                config, sockets = metrics_config(config), self._metrics_sockets
                serve_in_process(app, config, sockets, ready=ready, worker=True)
            else:
                if self._metrics_sockets is not None:
                    self._metrics_sockets.close()
                sockets = self._sockets.for_worker(slot)
                for sock in self._sockets.quic:  # the other workers' UDP sockets
                    if sock not in sockets.quic:
                        sock.close()
                path = config.app or config.application_path
                assert path is not None
                app = load_app(path)
                recorder = None
                if self._metrics is not None and block is not None:
                    recorder = self._metrics.recorder(block)
                serve_in_process(app, config, sockets, ready=ready, worker=True, metrics=recorder)
        except ConfigError as err:
            print(err.line(), file=sys.stderr)
            status = EXIT_CONFIG
        except StartupFailure as err:
            print(f"tricorn: startup failed: {' '.join(str(err).split())}", file=sys.stderr)
            status = EXIT_STARTUP
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            sys.stderr.flush()
            sys.stdout.flush()
            logging.shutdown()
            os._exit(status)

    def _readiness(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.ready_fd, 1)
        except OSError:
            data = b""
        os.close(worker.ready_fd)
        worker.ready_fd = -1
        if not data:
            return  # it exited before listening; _reap reports it
        worker.ready = True
        self._ever_ready |= worker.slot != METRICS_SLOT
        log.debug("%s (pid %d) is serving", worker.name, worker.pid)
        if worker is self._replacing:
            for old in self._workers.values():
                if old.slot == worker.slot and old is not worker and not old.stopping:
                    old.stopping = True
                    _kill(old.pid, signal.SIGTERM)
            self._next_rolling()

    def _reap(self) -> None:
        while self._workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
                worker.ready_fd = -1
            if self._metrics is not None and worker.block is not None:
                self._metrics.release(worker.block)
            self._exited(worker, status)

    def _exited(self, worker: _Worker, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        slot = worker.slot
        if worker is self._replacing:  # a reload's new worker failed to start
            log.error("reload: the new %s exited (%s); keeping the old one", worker.name, code)
            self._replacing = None
            self._rolling.clear()
            return
        if worker.stopping or self._stopping:
            log.debug("%s (pid %d) stopped (%s)", worker.name, worker.pid, code)
            return
        if slot >= self._slots:
            return
        if code in (EXIT_CONFIG, EXIT_STARTUP) and not self._ever_ready:
            # The worker said why in one line on stderr; that is the report.
            log.debug("%s could not start (exit status %d): stopping", worker.name, code)
            self._status = code
            self._stop()
            return
        if code == 0:
            log.info("%s (pid %d) retired: starting a new one", worker.name, worker.pid)
            if self._metrics is not None and slot != METRICS_SLOT:
                self._metrics.worker_exited(retired=True)
            self._start(slot, self.config)
            return
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        delay = self._backoff.get(slot, _BACKOFF_FIRST)
        if time.monotonic() - worker.started >= _HEALTHY_AFTER:
            delay = _BACKOFF_FIRST
        self._backoff[slot] = min(delay * 2, _BACKOFF_MAX)
        log.warning(
            "%s (pid %d) died (%s): restarting it in %.1f s", worker.name, worker.pid, how, delay
        )
        if self._metrics is not None and slot != METRICS_SLOT:
            self._metrics.worker_exited(retired=False)
        self._restart_at[slot] = time.monotonic() + delay


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: SIGTERM this worker if the parent dies (even by SIGKILL), so no
    worker outlives its supervisor holding the ports."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _binds(config: Config) -> tuple[object, ...]:
    return (config.bind, config.insecure_bind, config.quic_bind, config.metrics_bind)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise
