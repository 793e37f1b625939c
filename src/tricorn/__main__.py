"""``python -m tricorn``: the same as the ``tricorn`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
