"""The one place that names asyncio, uvloop and trio.

Everything else in tricorn is written against anyio; this module only picks
the event loop that anyio runs on (``-k asyncio|uvloop|trio``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from .errors import StartupFailure

__all__ = ["BACKENDS", "run"]

T = TypeVar("T")

BACKENDS = ("asyncio", "uvloop", "trio")


def _options(worker_class: str) -> tuple[str, dict[str, Any]]:
    if worker_class == "asyncio":
        return "asyncio", {}
    if worker_class == "uvloop":
        if importlib.util.find_spec("uvloop") is None:
            raise StartupFailure(
                "worker_class 'uvloop' needs uvloop: pip install 'tricorn[uvloop]'"
            )
        return "asyncio", {"use_uvloop": True}
    if worker_class == "trio":
        if importlib.util.find_spec("trio") is None:
            raise StartupFailure("worker_class 'trio' needs trio: pip install 'tricorn[trio]'")
        return "trio", {}
    raise StartupFailure(f"unknown worker_class {worker_class!r}; use one of {BACKENDS}")


def run(fn: Callable[..., Awaitable[T]], *args: Any, worker_class: str) -> T:
    """Run ``fn(*args)`` on the event loop named by ``worker_class``.

    :raises StartupFailure: the backend's library is not installed.
    """
    backend, options = _options(worker_class)
    return anyio.run(fn, *args, backend=backend, backend_options=options)
