"""A stateless HPACK encoder for response header blocks (RFC 7541).

tricorn never inserts response fields into the peer's dynamic table: every
field is sent as an indexed static-table entry or as a literal *without
indexing* (§6.2.2), its name indexed from the static table when it can be,
the strings without Huffman coding. A field then always encodes to the same
bytes, whatever was sent before, so encodings are cached per
``(name, value)`` for the whole process and a typical response head costs a
few dictionary lookups instead of h2's per-field table search, eviction and
Huffman coding. The price is a few bytes per response (no cross-response
compression), which loopback benchmarks and real clients do not notice next
to the CPU saved; decoders need nothing special (the dynamic table stays
empty, so its size setting is irrelevant).

h2 calls ``encode(headers)`` and sets ``header_table_size``; nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from hpack import Decoder
from hpack.table import HeaderTable

__all__ = ["CachingDecoder", "StatelessEncoder"]

_CACHE_LIMIT = 4096  # distinct fields cached; then the cache starts over

_INDEX: dict[tuple[bytes, bytes], int] = {}
_NAME_INDEX: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _INDEX.setdefault((_name, _value), _index)
    _NAME_INDEX.setdefault(_name, _index)


def _integer(value: int, prefix_bits: int, flags: int) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix; ``flags`` fills the
    bits above the prefix in the first byte."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    return _integer(len(data), 7, 0x00) + data  # H bit 0: no Huffman


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field's representation (indexed, or literal without indexing)."""
    index = _INDEX.get((name, value))
    if index is not None:
        return _integer(index, 7, 0x80)  # §6.1 indexed
    name_index = _NAME_INDEX.get(name)
    if name_index is not None:
        return _integer(name_index, 4, 0x00) + _string(value)  # §6.2.2, indexed name
    return b"\x00" + _string(name) + _string(value)  # §6.2.2, new name


class StatelessEncoder:
    """Drop-in for ``hpack.Encoder`` in h2 (see the module docstring)."""

    def __init__(self) -> None:
        self.header_table_size = 4096  # set by h2 from the peer's SETTINGS; unused
        self._cache: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        cache = self._cache
        parts = []
        for field in headers:
            encoded = cache.get(field)
            if encoded is None:
                encoded = encode_field(field[0], field[1])
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[field] = encoded
            parts.append(encoded)
        return b"".join(parts)


_NOT_INDEXED = re.compile(rb"[\x00-\x7f]")  # a byte that is not a one-byte indexed field


class CachingDecoder:
    """``hpack.Decoder`` with a memory for repeated header blocks.

    A block made only of one-byte indexed fields (every byte has its high
    bit set: RFC 7541 §6.1, index < 127) changes no state, so its meaning
    depends only on the dynamic table; any other block may change the table
    and empties the memory. Clients that repeat a request (the same
    headers, all in the table after the first time) then cost one lookup.
    """

    def __init__(self, decoder: Decoder) -> None:
        self._decoder = decoder
        self._memory: dict[bytes, Any] = {}

    def __getattr__(self, name: str) -> Any:  # max_header_list_size, ...
        return getattr(self._decoder, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_decoder", "_memory"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._decoder, name, value)

    def decode(self, data: bytes, raw: bool = False) -> Any:
        """The fields, as plain ``(name, value)`` tuples (hpack's are a
        subclass)."""
        data = bytes(data)
        memory = self._memory
        if _NOT_INDEXED.search(data) is None:
            headers = memory.get(data)
            if headers is None:
                headers = [(name, value) for name, value in self._decoder.decode(data, raw=raw)]
                if len(memory) >= 64:
                    memory.clear()
                memory[data] = headers
            return list(headers)
        memory.clear()
        return [(name, value) for name, value in self._decoder.decode(data, raw=raw)]
