"""The ``tricorn`` command: argparse generated from the settings table.

Every setting has its flags (Hypercorn's where it has one, ``--key-name``
otherwise); lists take one item per flag (``-b A -b B``), booleans come as
``--x`` / ``--no-x``. Flags default to ``argparse.SUPPRESS``, so only the
flags actually given override the file and the environment.

Exit statuses: 0 after a clean shutdown, 2 for a configuration error (one
line on stderr naming the key, the value and what is allowed), 3 when the
server cannot start (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from .config import FIELDS, Config, Field, load_config
from .errors import ConfigError, StartupFailure

__all__ = ["EXIT_CONFIG", "EXIT_STARTUP", "build_parser", "config_from_args", "main"]

EXIT_CONFIG = 2
EXIT_STARTUP = 3

_NOT_SETTINGS = frozenset({"config", "application"})


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it
    (``COLUMNS``, then the terminal on stdout, else 80)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    stdout = sys.__stdout__
    if columns <= 0 and stdout is not None:
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns
        except (AttributeError, ValueError, OSError):  # (no terminal, or no file)
            columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, told its width: without one it imports
    ``shutil`` to measure the terminal, and ``shutil`` imports ``bz2``,
    ``lzma`` and ``fnmatch`` with their C libraries: 0.5 MiB of every server
    process's idle RSS (argparse makes a formatter for every option it adds,
    not only for ``--help``)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns() - 2)  # (argparse's own margin)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too, with the same exit status as bad config."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see --help)\n")


def _version() -> str:
    # Only --version reads it: importlib.metadata (with email, zipfile, csv)
    # would add over a MiB to every worker's memory if imported up front.
    import importlib.metadata

    try:
        return importlib.metadata.version("tricorn")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


def _compiled() -> bool:
    """Whether this is the compiled build (setup.py: TRICORN_COMPILE=1):
    the HTTP/1.1 adapter is a C extension beside its source (looked for,
    not imported: --version loads nothing it does not need)."""
    import importlib.machinery
    from pathlib import Path

    protocol = Path(__file__).parent / "protocol"
    return any(
        (protocol / f"http1{suffix}").is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


class _VersionAction(argparse.Action):
    """``--version``, reading the version only when asked for it."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS)
        self.help = "show program's version number and exit"

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        build = " (compiled)" if _compiled() else ""
        sys.stdout.write(f"tricorn {_version()}{build}\n")
        parser.exit()


def _add_setting(parser: argparse.ArgumentParser, field: Field) -> None:
    shape = field.kind.cli_shape
    # argparse %-formats help texts, and some docs hold %-atoms.
    help_text = field.doc.replace("%", "%%") + f" [{field.env}]"
    dest, default = field.key, argparse.SUPPRESS
    if shape == "flag":
        action: str | type[argparse.Action] = argparse.BooleanOptionalAction
        parser.add_argument(*field.flags, action=action, dest=dest, default=default, help=help_text)
    else:
        action = "append" if shape == "append" else "store"
        parser.add_argument(
            *field.flags,
            action=action,
            dest=dest,
            default=default,
            metavar=field.key.upper(),
            help=help_text,
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: APP, ``-c/--config``, ``--version`` and one
    option per setting."""
    parser = _Parser(
        prog="tricorn",
        description="Serve an ASGI application over HTTP/1.1, HTTP/2 and HTTP/3.",
        formatter_class=_Formatter,
        epilog="Every setting can also be set in the config file or as TRICORN_<KEY>; "
        "see docs/configuration.md.",
    )
    parser.add_argument(
        "application",
        nargs="?",
        default=argparse.SUPPRESS,
        metavar="APP",
        help="The application as module:attribute (overrides the 'app' setting).",
    )
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        help="Config file: a TOML path, python:module.attr or file:path.py.",
    )
    parser.add_argument("--version", action=_VersionAction)
    for field in FIELDS:
        _add_setting(parser, field)
    return parser


def cli_settings(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line, keyed by setting (APP as ``app``)."""
    given = vars(args)
    settings = {key: value for key, value in given.items() if key not in _NOT_SETTINGS}
    if "application" in given:
        settings["app"] = given["application"]
    return settings


def config_from_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Parse ``argv`` and load the Config (defaults < file < env < CLI).

    :raises ConfigError: from :func:`load_config`.
    :raises SystemExit: for ``--help``, ``--version`` or a usage error.
    """
    args = build_parser().parse_args(argv)
    return load_config(config_path=args.config, env=env, cli=cli_settings(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server from the command line; return the exit status."""
    try:
        config = config_from_args(argv, os.environ)
        if config.app_path is None:
            allowed = "an application as module:attribute (give APP, or set app in the config)"
            raise ConfigError("app", None, allowed)
        from .workers import run  # lazy: the server is only imported to serve

        return run(config, reload_config=lambda: config_from_args(argv, os.environ))
    except ConfigError as err:
        print(err.line(), file=sys.stderr)
        return EXIT_CONFIG
    except StartupFailure as err:
        print(f"tricorn: startup failed: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_STARTUP
