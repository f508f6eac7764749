"""gatewayd(8), generated from the CLI's own parser so it cannot drift from --help.

    python3 scripts/debian/manpage.py [--date YYYY-MM-DD] > gatewayd.8

The commands and options come from gatewayd.cli.build_parser(); only the sections
about the installed system (files, signals, rolling back) are written here.
"""

from __future__ import annotations

import argparse
import sys

from cli_reference import Command, CommandLine, Option, read_command_line

# What an admin needs beside the commands; paths are the Debian package's.
INSTALLED_SYSTEM = r"""
.SH SERVICE
The package installs the systemd unit
.B gatewayd.service
but leaves it disabled: edit
.IR /etc/gatewayd/policy.yaml ,
run
.BR "gatewayd check /etc/gatewayd/policy.yaml" ,
then
.BR "systemctl enable \-\-now gatewayd" .
The daemon logs to the journal
.RB ( "journalctl \-u gatewayd" ),
.B gatewayd status
shows what it is doing, and Prometheus metrics are served on 127.0.0.1:9108
unless the policy's
.B metrics.listen
says otherwise.
.SH SIGNALS
.TP
.B SIGHUP
re-read the policy; a policy with errors is refused and the running one stays
.RB ( "systemctl reload gatewayd" ).
.TP
.B SIGTERM
remove gatewayd's nft tables, queue rule and qdiscs, then exit. Stopping or
removing the package does this.
.SH ROLLING BACK
The last policy that applied cleanly is kept in
.IR /var/lib/gatewayd .
If the policy file is broken when the daemon starts, it runs that copy, logs
every error as FILE:LINE:COL and sets the metric
.B gatewayd_policy_degraded
to 1.
.B gatewayd apply NEW \-\-confirm\-within 60
switches to a new policy, checks that the box still forwards, and puts the
previous policy back by itself unless
.B gatewayd confirm
arrives within the window.
.SH FILES
.TP
.I /etc/gatewayd/policy.yaml
the policy (a conffile: upgrades never overwrite your edits)
.TP
.I /var/lib/gatewayd
state: the last-known-good policy
.TP
.I /run/gatewayd/control.sock
where status, apply and confirm reach the daemon (root only)
.TP
.I /usr/share/gatewayd/catalog.yaml
the built-in application catalog
.TP
.I /usr/share/gatewayd/schema/policy.schema.json
the policy's JSON Schema, for editors
.TP
.I /usr/share/gatewayd/examples/
example policies
.SH SEE ALSO
.BR nft (8),
.BR tc (8),
.BR conntrack (8),
.BR systemctl (1),
.BR journalctl (1),
.I /usr/share/doc/gatewayd/README.md
"""


def render_manpage(command_line: CommandLine, version: str, date: str) -> str:
    prog = command_line.prog
    lines = [
        f'.TH {prog.upper()} 8 "{date}" "{prog} {escape(version)}" "System Administration"',
        ".SH NAME",
        f"{prog} \\- {escape(_lowercase_first(command_line.description.rstrip('.')))}",
        ".SH SYNOPSIS",
        f".B {prog}",
        " ".join([*(_synopsis_word(option) for option in command_line.options),
                  "\\fICOMMAND\\fR", "[\\fIOPTIONS\\fR]"]),
        ".SH DESCRIPTION",
        escape(command_line.description),
        "Every command takes \\fB\\-h\\fR, \\fB\\-\\-help\\fR.",
        ".SH OPTIONS",
    ]
    for option in command_line.options:
        lines += _option_entry(option)
    lines.append(".SH COMMANDS")
    for command in command_line.commands:
        lines += _command_entry(prog, command)
    return "\n".join(lines) + INSTALLED_SYSTEM


def _command_entry(prog: str, command: Command) -> list[str]:
    lines = [f".SS {prog} {command.name}",
             " ".join([f"\\fB{prog} {command.name}\\fR", *(_synopsis_word(o) for o in command.options)]),
             ".PP",
             escape(command.summary)]
    for option in command.options:
        lines += _option_entry(option)
    return lines


def _option_entry(option: Option) -> list[str]:
    text = escape(option.help) if option.help else ""
    if option.choices:
        text = (text + " " if text else "") + "One of: " + ", ".join(escape(c) for c in option.choices) + "."
    return [".TP", _term(option), *([text] if text else [])]


def _term(option: Option) -> str:
    if option.positional:
        return f"\\fI{option.value_name}\\fR"
    flags = ", ".join(f"\\fB{escape(flag)}\\fR" for flag in option.flags)
    return f"{flags} \\fI{option.value_name}\\fR" if option.value_name else flags


def _synopsis_word(option: Option) -> str:
    if option.positional:
        return f"\\fI{option.value_name}\\fR"
    # The long form reads best in a synopsis.
    word = f"\\fB{escape(option.flags[-1])}\\fR"
    if option.value_name:
        word += f" \\fI{option.value_name}\\fR"
    return word if option.required else f"[{word}]"


def escape(text: str) -> str:
    """Text as roff prints it literally: backslashes, hyphens, and no line read as a request."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in escaped.splitlines())


def _lowercase_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def main(argv: list[str] | None = None) -> int:
    from gatewayd.cli import build_parser, installed_version

    arguments = argparse.ArgumentParser(description="Print gatewayd(8) in roff.")
    arguments.add_argument("--date", default="", help="the date in the page footer (YYYY-MM-DD)")
    options = arguments.parse_args(argv)
    sys.stdout.write(render_manpage(read_command_line(build_parser()), installed_version(), options.date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
