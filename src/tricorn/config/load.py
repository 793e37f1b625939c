"""Build a :class:`Config` from its sources, lowest priority first:
defaults < config file < ``TRICORN_*`` environment variables < CLI.

The config file takes Hypercorn's three forms: a TOML path,
``python:module.attr`` (a module, or an object in one) and ``file:path.py``
(a Python file, executed). From Python sources, every public attribute that
is neither a module nor callable is a setting, so ``import os`` or a helper
function is fine, but any other public name must be a setting: names starting
with ``_`` are private.

Each source is checked on its own, so an error names the key the way the user
wrote it there (``workers``, ``TRICORN_WORKERS``, ``--workers``). Unknown
keys are errors with a "did you mean" hint, never ignored.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import ConfigError
from .fields import FIELDS_BY_KEY, Field, field_for, suggest
from .model import Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 only
    # tomli is a dependency on 3.10 only; the ignore is for type-checking without it.
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["ENV_PREFIX", "from_cli", "from_env", "load_config", "read_config_file"]

ENV_PREFIX = "TRICORN_"


def load_config(
    *,
    config_path: str | None = None,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, object] | None = None,
) -> Config:
    """Merge the sources and return the checked Config.

    :param config_path: a TOML path, ``python:module.attr`` or ``file:path.py``.
    :param env: environment variables; only ``TRICORN_*`` ones are read.
    :param cli: ``{key: value}`` from the command line; a ``str`` value is
        parsed as text (as an environment variable is), anything else is
        checked as it is.
    :raises ConfigError: a source cannot be read, a key is unknown, a value is
        not allowed, or settings contradict each other.
    """
    values: dict[str, object] = {}
    if config_path is not None:
        values.update(read_config_file(config_path))
    if env is not None:
        values.update(from_env(env))
    if cli is not None:
        values.update(from_cli(cli))
    return Config(**values)  # type: ignore[arg-type]


def from_env(env: Mapping[str, str]) -> dict[str, object]:
    """The checked settings given by ``TRICORN_<KEY>`` variables in ``env``.

    :raises ConfigError: an unknown ``TRICORN_*`` variable (with a hint) or a
        value that is not allowed, naming the variable.
    """
    values: dict[str, object] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        field = FIELDS_BY_KEY.get(name[len(ENV_PREFIX) :].lower())
        if field is None:
            known = [f.env for f in FIELDS_BY_KEY.values()]
            hint = suggest(name, known) or "see docs/configuration.md for every setting"
            raise ConfigError(name, text, "not a tricorn setting", hint)
        values[field.key] = field.parse(text, name=name)
    return values


def from_cli(cli: Mapping[str, object]) -> dict[str, object]:
    """The checked settings given on the command line, keyed by setting.

    :raises ConfigError: naming the long flag.
    """
    values: dict[str, object] = {}
    for key, value in cli.items():
        field = field_for(key, value=value)
        values[key] = _from_cli_value(field, value)
    return values


def _from_cli_value(field: Field, value: object) -> object:
    if isinstance(value, str):
        return field.parse(value, name=field.flag)
    return field.check(value, name=field.flag)


def read_config_file(config_path: str) -> dict[str, object]:
    """The checked settings in a config file.

    :raises ConfigError: the file or object cannot be read (naming it), or a
        key or value in it is bad (naming the key).
    """
    readers: dict[str, Callable[[str], Mapping[str, object]]] = {
        "python:": _read_python_object,
        "file:": _read_python_file,
    }
    for prefix, reader in readers.items():
        if config_path.startswith(prefix):
            raw = reader(config_path[len(prefix) :])
            break
    else:
        raw = _read_toml(config_path)
    return {key: field_for(key, value=value).check(value) for key, value in raw.items()}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_toml(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as file:
            data: dict[str, object] = tomllib.load(file)
            return data
    except OSError as exc:
        hint = exc.strerror or _one_line(exc)
        raise ConfigError("config", path, "a readable TOML file", hint) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", path, "valid TOML", _one_line(exc)) from None


def _public_settings(namespace: object) -> dict[str, object]:
    """Public attributes that are neither modules nor callables."""
    values: dict[str, object] = {}
    for name in dir(namespace):
        if name.startswith("_"):
            continue
        value = getattr(namespace, name)
        if not isinstance(value, types.ModuleType) and not callable(value):
            values[name] = value
    return values


def _read_python_object(target: str) -> dict[str, object]:
    """``module`` or ``module.attr`` (as Hypercorn: try the module first)."""
    source = "python:" + target
    try:
        try:
            namespace: object = importlib.import_module(target)
        except ImportError:
            module_name, _, attr = target.rpartition(".")
            if not module_name:
                raise
            namespace = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            "config", source, "an importable module or module.attr", _one_line(exc)
        ) from None
    except Exception as exc:
        raise ConfigError(
            "config", source, "a module that imports cleanly", _one_line(exc)
        ) from None
    return _public_settings(namespace)


def _read_python_file(path: str) -> dict[str, object]:
    source = "file:" + path
    if not Path(path).is_file():
        raise ConfigError("config", source, "an existing Python file")
    spec = importlib.util.spec_from_file_location("tricorn_config_file", path)
    if spec is None or spec.loader is None:
        raise ConfigError("config", source, "a Python file (ending in .py)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(
            "config", source, "a Python file that runs cleanly", _one_line(exc)
        ) from None
    return _public_settings(module)
