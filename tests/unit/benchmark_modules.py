"""benchmarks/*.py loaded by path for their tests (benchmarks/ is not an
installed package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(stem: str) -> ModuleType:
    """``benchmarks/<stem>.py``, as the module ``tricorn_bench_<stem>``."""
    spec = importlib.util.spec_from_file_location(
        f"tricorn_bench_{stem}", BENCHMARKS / f"{stem}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
