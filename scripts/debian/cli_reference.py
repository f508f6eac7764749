"""gatewayd's command line as plain data, read from its own argparse parser.

The man page (manpage.py) and the bash completion (bash_completion.py) are both
rendered from this, so neither can say something `gatewayd --help` does not.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    """One option or positional argument of a command."""

    flags: tuple[str, ...]  # ("-h", "--help"); empty for a positional argument
    value_name: str | None  # "POLICY", "STATE_DIR"; None when the option takes no value
    help: str
    choices: tuple[str, ...]
    required: bool

    @property
    def positional(self) -> bool:
        return not self.flags


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    options: tuple[Option, ...]


@dataclass(frozen=True)
class CommandLine:
    prog: str
    description: str
    options: tuple[Option, ...]  # the global ones, before the command
    commands: tuple[Command, ...]


def read_command_line(parser: argparse.ArgumentParser) -> CommandLine:
    """The parser's global options and subcommands, help texts expanded as --help shows them."""
    subcommands = _subcommands_action(parser)
    if subcommands is None:
        raise ValueError(f"{parser.prog}: the parser has no subcommands")
    summaries = {choice.dest: choice.help or "" for choice in subcommands._choices_actions}
    commands = []
    for name, subparser in subcommands.choices.items():
        if _subcommands_action(subparser) is not None:
            # Fail the build loudly rather than leave a nested command out of the man page.
            raise ValueError(f"{parser.prog} {name}: nested subcommands are not supported here yet")
        # Every command takes -h/--help; the man page says so once instead of under each command.
        options = tuple(_option(subparser, action) for action in subparser._actions
                        if not isinstance(action, argparse._HelpAction))
        commands.append(Command(name, summaries.get(name, ""), options))
    global_options = tuple(_option(parser, action) for action in parser._actions if action is not subcommands)
    return CommandLine(parser.prog, parser.description or "", global_options, tuple(commands))


def _subcommands_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[
        argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _option(parser: argparse.ArgumentParser, action: argparse.Action) -> Option:
    takes_value = action.nargs != 0
    value_name = None
    if takes_value:
        named = action.metavar if isinstance(action.metavar, str) else action.dest
        value_name = named.upper()
    # argparse's own expansion of %(default)s and friends, exactly as --help prints it.
    help_text = parser._get_formatter()._expand_help(action) if action.help else ""
    choices = tuple(str(choice) for choice in action.choices) if action.choices else ()
    return Option(tuple(action.option_strings), value_name, help_text, choices,
                  bool(action.required) or not action.option_strings)
