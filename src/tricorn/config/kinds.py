"""Value kinds of the settings table: how a setting's value is checked, and
how it is read from text (``TRICORN_*`` environment variables, CLI flags).

A :class:`Kind` is two pure functions plus the words used to describe it:

* ``check(value)`` takes a Python value (from TOML, a ``python:`` or ``file:``
  config, a mapping, or ``parse``) and returns it normalised (e.g. an ``int``
  number of seconds becomes a ``float``, a list becomes a tuple) or raises
  :class:`Invalid`. ``check`` is idempotent: checking a checked value returns
  it unchanged, so ``Config`` can re-check everything it is built with.
* ``parse(text)`` turns text into a Python value for ``check``: booleans are
  ``true/false/1/0/yes/no/on/off``, an optional setting is unset by ``none`` or
  the empty string, and a list is comma-separated (or a TOML array when the
  text starts with ``[``, for items that contain commas).

Kinds know nothing of keys; :class:`tricorn.config.fields.Field` adds the key
and turns :class:`Invalid` into :class:`~tricorn.errors.ConfigError`.
"""

from __future__ import annotations

import functools
import math
import operator
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 only
    # tomli is a dependency on 3.10 only; the ignore is for type-checking without it.
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "Invalid",
    "Kind",
    "boolean",
    "choice",
    "integer",
    "json_object",
    "number",
    "octal",
    "optional",
    "string",
    "string_list",
    "verify_flags",
    "verify_mode",
]

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
NONE_WORDS = frozenset({"none", ""})


class Invalid(ValueError):
    """A value that a :class:`Kind` rejects. The message, if any, says why more
    precisely than :attr:`Kind.allowed` (e.g. a bind's own parse error)."""


@dataclass(frozen=True, slots=True)
class Kind:
    """How one setting's values are checked and read from text."""

    annotation: str
    """The static type, spelled exactly as ``Config`` declares the attribute."""
    allowed: str
    """What is accepted, as a phrase for error lines and the docs."""
    check: Callable[[object], object]
    """Normalise a Python value, or raise :class:`Invalid`. Idempotent."""
    parse: Callable[[str], object]
    """Text to a Python value for :attr:`check`; may raise :class:`Invalid`."""
    cli_shape: str = "value"
    """How the CLI takes it: ``"value"``, ``"flag"`` (--x/--no-x) or ``"append"``."""


def _identity(text: str) -> object:
    return text


# --- scalars -------------------------------------------------------------------------------


def _check_bool(value: object) -> object:
    if not isinstance(value, bool):
        raise Invalid
    return value


def _parse_bool(text: str) -> object:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise Invalid


def boolean() -> Kind:
    """``true`` or ``false``."""
    return Kind("bool", "true or false", _check_bool, _parse_bool, cli_shape="flag")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _bounds_phrase(minimum: float | None, maximum: float | None, strict: bool) -> str:
    if minimum is not None and maximum is not None:
        return f" from {_num(minimum)} to {_num(maximum)}"
    if minimum is not None:
        return f" {'>' if strict else '>='} {_num(minimum)}"
    return ""


def _in_bounds(x: float, minimum: float | None, maximum: float | None, strict: bool) -> bool:
    if minimum is not None and (x <= minimum if strict else x < minimum):
        return False
    return maximum is None or x <= maximum


def integer(*, minimum: int | None = None, maximum: int | None = None, unit: str = "") -> Kind:
    """A whole number within ``[minimum, maximum]``. ``unit`` goes in the docs."""

    def check(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid
        if not _in_bounds(value, minimum, maximum, strict=False):
            raise Invalid
        return value

    def parse(text: str) -> object:
        try:
            return int(text.strip().replace("_", ""), 10)
        except ValueError:
            raise Invalid from None

    noun = f"a whole number{' of ' + unit if unit else ''}"
    return Kind("int", noun + _bounds_phrase(minimum, maximum, False), check, parse)


def _parse_octal(text: str) -> object:
    # A umask is written in octal by habit ("077", "0o077"); plain "63" stays decimal.
    word = text.strip().lower()
    try:
        if len(word) > 1 and word.startswith("0") and word.isdigit():
            return int(word, 8)
        return int(word, 0)
    except ValueError:
        raise Invalid from None


def octal(*, maximum: int) -> Kind:
    """A permission mask from 0 to ``maximum``; text may be octal (``077``, ``0o077``)."""
    base = integer(minimum=0, maximum=maximum)
    allowed = f"a permission mask from 0 to 0o{maximum:o} (octal like 0o077 or 077)"
    return replace(base, allowed=allowed, parse=_parse_octal)


def number(*, minimum: float = 0.0, strict: bool = True, unit: str = "seconds") -> Kind:
    """A finite number (int or float, stored as float) above ``minimum``
    (``strict``) or at least ``minimum``."""

    def check(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid
        if not math.isfinite(value) or not _in_bounds(value, minimum, None, strict):
            raise Invalid
        return float(value)

    def parse(text: str) -> object:
        try:
            return float(text.strip())
        except ValueError:
            raise Invalid from None

    allowed = f"a number of {unit}{_bounds_phrase(minimum, None, strict)}"
    return Kind("float", allowed, check, parse)


def string(*, check: Callable[[str], str] | None = None, allowed: str = "a string") -> Kind:
    """Text; ``check`` may normalise it or raise :class:`Invalid`."""
    inner = check

    def check_str(value: object) -> object:
        if not isinstance(value, str):
            raise Invalid
        return inner(value) if inner is not None else value

    return Kind("str", allowed, check_str, _identity)


def choice(options: Sequence[str], *, fold: Callable[[str], str] | None = None) -> Kind:
    """One of ``options``; ``fold`` (e.g. ``str.upper``) normalises the case first."""

    def check(value: object) -> object:
        if not isinstance(value, str):
            raise Invalid
        folded = fold(value) if fold is not None else value
        if folded not in options:
            raise Invalid
        return folded

    # Spelt as Python prints a postponed annotation (single quotes), so a test
    # can compare it with Config's declared type.
    annotation = "Literal[" + ", ".join(repr(o) for o in options) + "]"
    allowed = "one of " + ", ".join(options)
    return Kind(annotation, allowed, check, _identity)


def optional(kind: Kind, *, none_means: str = "unset") -> Kind:
    """``kind`` or ``None``; ``none`` or empty text gives ``None``."""

    def check(value: object) -> object:
        return None if value is None else kind.check(value)

    def parse(text: str) -> object:
        return None if text.strip().lower() in NONE_WORDS else kind.parse(text)

    allowed = f"{kind.allowed}, or none ({none_means})"
    return replace(
        kind, annotation=f"{kind.annotation} | None", allowed=allowed, check=check, parse=parse
    )


# --- collections ---------------------------------------------------------------------------


def _parse_list(text: str) -> object:
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        # A TOML array, for items containing commas; "[::1]:80" is a bind, not one.
        try:
            return tomllib.loads(f"v = {stripped}")["v"]
        except tomllib.TOMLDecodeError:
            pass
    return [item.strip() for item in stripped.split(",") if item.strip()]


def string_list(*, item: Callable[[str], str] | None = None, allowed: str = "strings") -> Kind:
    """A list of strings, stored as a tuple. A single string means a one-item
    list (as Hypercorn's ``bind = "…"``). ``item`` checks and normalises each."""

    def check(value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise Invalid
        return tuple(item(v) for v in value) if item is not None else tuple(value)

    return Kind("tuple[str, ...]", f"a list of {allowed}", check, _parse_list, cli_shape="append")


def _check_object(value: object) -> object:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise Invalid
    return value


def _parse_json(text: str) -> object:
    import json  # (only for a setting given as JSON: kept out of every worker's memory)

    try:
        return json.loads(text)
    except ValueError as exc:
        raise Invalid(f"not JSON: {exc}") from None


def json_object() -> Kind:
    """A table (dict with string keys); as text, a JSON object."""
    return Kind("dict[str, Any]", "a table (as text: a JSON object)", _check_object, _parse_json)


# --- TLS enums -----------------------------------------------------------------------------

VERIFY_MODES = ("CERT_NONE", "CERT_OPTIONAL", "CERT_REQUIRED")


def _check_verify_mode(value: object) -> object:
    if isinstance(value, ssl.VerifyMode):
        return value
    if isinstance(value, str) and value.upper() in VERIFY_MODES:
        return ssl.VerifyMode[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return ssl.VerifyMode(value)
        except ValueError:
            raise Invalid from None
    raise Invalid


def verify_mode() -> Kind:
    """An ``ssl.VerifyMode``, by name (as Hypercorn's ``--verify-mode``) or number."""
    allowed = "one of " + ", ".join(VERIFY_MODES)
    return Kind("ssl.VerifyMode", allowed, _check_verify_mode, _identity)


_ALL_VERIFY_FLAGS = functools.reduce(operator.or_, (int(f) for f in ssl.VerifyFlags), 0)


def _flag_by_name(name: str) -> ssl.VerifyFlags:
    try:
        return ssl.VerifyFlags[name.strip().upper()]
    except KeyError:
        raise Invalid(f"unknown flag {name.strip()!r}") from None


def _check_verify_flags(value: object) -> object:
    if isinstance(value, ssl.VerifyFlags):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value & ~_ALL_VERIFY_FLAGS:
            raise Invalid("unknown flag bits")
        return ssl.VerifyFlags(value)
    names: list[object] = []
    if isinstance(value, str):
        names.extend(value.replace("|", ",").split(","))
    elif isinstance(value, (list, tuple)):
        names.extend(value)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise Invalid
    flags = ssl.VerifyFlags(0)
    for name in names:
        flags |= _flag_by_name(str(name))
    return flags


def verify_flags() -> Kind:
    """An ``ssl.VerifyFlags``: a number, a flag name, or names joined by ``|`` or ``,``."""
    allowed = "ssl.VerifyFlags names such as VERIFY_X509_STRICT, joined by '|', or a number"
    return Kind("ssl.VerifyFlags", allowed, _check_verify_flags, _identity)
