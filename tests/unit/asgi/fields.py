"""Default response fields for cycles under test (the server's are
``tricorn.server.context.DefaultHeaders``)."""

from __future__ import annotations

from tricorn.protocol.events import Headers


class FixedFields:
    """A :class:`~tricorn.asgi.cycle.DefaultFields` whose values never change."""

    def __init__(self, *fields: tuple[bytes, bytes]) -> None:
        self._fields = list(fields)
        self.names = frozenset(name for name, _ in fields)

    def __call__(self) -> Headers:
        return list(self._fields)
