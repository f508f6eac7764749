"""gatewayd(8) and the bash completion, generated from the CLI's parser: complete and usable."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "debian"))  # the generators are tools, not a package
from bash_completion import render_completion  # noqa: E402 (after the sys.path line)
from cli_reference import read_command_line  # noqa: E402
from manpage import escape, render_manpage  # noqa: E402

from gatewayd.cli import build_parser  # noqa: E402


def parser_commands() -> dict[str, argparse.ArgumentParser]:
    """The subcommands, read straight from argparse (not through cli_reference, which is under test)."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("gatewayd's parser has no subcommands")


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings
            if not isinstance(action, argparse._HelpAction)}


def manpage() -> str:
    return render_manpage(read_command_line(build_parser()), "1.2.3", "2025-01-01")


def manpage_section(page: str, command: str) -> str:
    """The roff text of one command's subsection."""
    start = page.index(f".SS gatewayd {command}\n")
    end = page.find("\n.S", start + 1)
    return page[start:end]


def test_manpage_lists_every_command_and_each_of_its_options() -> None:
    page = manpage()
    commands = parser_commands()
    assert len(commands) >= 9
    for name, subparser in commands.items():
        section = manpage_section(page, name)
        for flag in option_strings(subparser):
            assert f"\\fB{escape(flag)}\\fR" in section, f"gatewayd {name} {flag} is missing from gatewayd(8)"
    options_section = page[page.index(".SH OPTIONS"):page.index(".SH COMMANDS")]
    for flag in option_strings(build_parser()) | {"--help"}:
        assert f"\\fB{escape(flag)}\\fR" in options_section, f"gatewayd {flag} is missing from gatewayd(8)"


def test_manpage_carries_help_texts_defaults_and_choices() -> None:
    run_section = manpage_section(manpage(), "run")
    assert escape("(default: /var/lib/gatewayd)") in run_section  # %(default)s expanded as --help does
    assert "One of: debug, info, warning, error." in run_section
    assert escape("run the daemon in the foreground (root)") in run_section


def test_manpage_is_roff_that_man_renders_without_warnings(tmp_path: Path) -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    page = tmp_path / "gatewayd.8"
    page.write_text(manpage())
    result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-P-cbou", str(page)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "gatewayd apply" in result.stdout and "1.2.3" in result.stdout


def test_escape_keeps_roff_requests_and_backslashes_literal() -> None:
    assert escape(".policy -x\\y\n'quoted") == "\\&.policy \\-x\\ey\n\\&'quoted"


def test_nested_subcommands_fail_loudly_instead_of_vanishing() -> None:
    parser = argparse.ArgumentParser(prog="gatewayd")
    commands = parser.add_subparsers()
    nested = commands.add_parser("status", help="s").add_subparsers()
    nested.add_parser("blocklist")
    with pytest.raises(ValueError, match="nested subcommands"):
        read_command_line(parser)


def complete(script: Path, *words: str) -> list[str]:
    """What the completion offers after `words` (the last one is being typed)."""
    driver = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _gatewayd_complete; ' \
             'printf "%s\\n" "${COMPREPLY[@]}"'
    result = subprocess.run(["bash", "--norc", "-c", driver, "complete", str(script), "gatewayd", *words],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def completion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = tmp_path_factory.mktemp("completion") / "gatewayd"
    script.write_text(render_completion(read_command_line(build_parser())))
    return script


def test_completion_offers_every_command_and_each_commands_options(completion: Path) -> None:
    commands = parser_commands()
    assert set(complete(completion, "")) >= set(commands)
    for name, subparser in commands.items():
        assert set(complete(completion, name, "--")) == {f for f in option_strings(subparser) if f.startswith("--")}


def test_completion_offers_choices_and_leaves_files_to_bash(completion: Path) -> None:
    assert complete(completion, "run", "--log-level", "") == ["debug", "info", "warning", "error"]
    assert complete(completion, "--catalog", "my.yaml", "ap") == ["apply"]
    assert complete(completion, "check", "") == []  # a policy file: bash's own file names (-o default)
    assert complete(completion, "run", "--policy", "") == []
