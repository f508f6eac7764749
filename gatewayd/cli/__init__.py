"""gatewayd command line: one module per subcommand, each adding its own parser.

`main()` builds the parser from SUBCOMMANDS; a new subcommand is a new module
with `add_parser(commands)` that sets `func` to what runs it. Subcommand
modules import their heavy parts (the daemon, the kernel bindings) inside the
function that runs, so `gatewayd check` stays quick and needs no root.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Protocol

from gatewayd.cli import (
    apply,
    check,
    classify,
    confirm,
    explain,
    ha_config,
    ha_notify,
    render,
    replay,
    report,
    run,
    status,
)


class Subcommand(Protocol):
    def add_parser(self, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


# In the order `gatewayd --help` lists them.
SUBCOMMANDS: tuple[Subcommand, ...] = (check, render, explain, replay, run, classify, status, apply, confirm, report,
                                       ha_config, ha_notify)


def installed_version() -> str:
    """gatewayd's version as installed (pip, the Debian package), for `gatewayd --version`."""
    # Imported here, and only when --version is given (_VersionAction): importlib.metadata
    # brings email, zipfile and csv (~2 MiB resident) into a process, the daemon included.
    from importlib import metadata

    try:
        return metadata.version("gatewayd")
    except metadata.PackageNotFoundError:  # a source tree run without installing it
        return "unknown"


class _VersionAction(argparse.Action):
    """`--version`: like argparse's "version" action, but the version is looked up only when asked."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str = "show program's version number and exit") -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        sys.stdout.write(f"{parser.prog} {installed_version()}\n")  # on stdout, as argparse's own action does
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatewayd", description="Office gateway: app classification, "
                                     "blocking and QoS through nftables and tc.")
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--catalog", help="application catalog to use instead of the built-in one")
    commands = parser.add_subparsers(dest="command", required=True)
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(commands)
    return parser


# What a shell reports for a command killed by SIGPIPE (128 + 13), as `gatewayd status | head` expects.
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # inside the try: a reader that went away shows up here, not at exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (head, less) closed the pipe: stop quietly. Python's exit flush would hit the
        # same closed pipe, so stdout becomes /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
