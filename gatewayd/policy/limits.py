"""How much work any policy, catalog or bindings file may ask for.

A policy is written by people, but `gatewayd check` also runs on whatever a
path points at: a FIFO, /dev/zero, a YAML alias bomb, 100,000 rules. Every
input must be checked within seconds and a few hundred MB, or refused with a
FILE:LINE:COL error that names the limit (`limit_message`). The limits sit far
above what an office writes: bench/reload.py's 5,000-host policy with 100,000
blocked domains, and a policy that names up to 60,000 hosts, stay well inside.

Limits set by the connection mark's bit widths (groups, classes, applications)
live beside their sections; they cannot be raised here.
"""

from __future__ import annotations

# Bytes read from a policy, catalog or bindings file; 60,000 hosts and 100,000
# domains take about 5 MB of YAML.
MAX_FILE_BYTES = 16 * 1024 * 1024

# YAML nodes one file may compose to, counting every alias as the nodes it
# stands for (a billion-laughs file is a few lines that expand to billions).
# Composing costs about 300 bytes a node, so this also bounds the memory.
MAX_YAML_NODES = 400_000

# Rules are matched one after another in the kernel; real policies have dozens.
MAX_RULES = 10_000

# Comparisons of a rule with an earlier one when looking for rules that can never
# match; an index keeps real policies far below it, a crafted one stops there.
MAX_REACHABILITY_COMPARISONS = 1_000_000

# Entries of one list. A blocklist app may carry 100,000 domains; ports and
# addresses of one app are each a handful in the catalog.
MAX_DOMAINS_PER_APP = 250_000
MAX_PORTS_PER_APP = 4_096
MAX_ADDRESSES_PER_APP = 65_536
MAX_ADDRESS_PORT_PAIRS_PER_APP = 65_536  # an app with both gets one kernel map element per pair
# Members of all groups and addresses of all the policy's apps together (60,000
# hosts still fit): an address costs tens of microseconds to parse and compile,
# and aliases can repeat one 10,000-entry list in every group (40 such took 12 s).
MAX_GROUP_MEMBERS = 65_536
MAX_APPLICATION_ADDRESSES = 65_536
MAX_BINDINGS = 65_536  # IP-MAC bindings, inline and from the bindings file together

# "did you mean ...?" compares a word with every candidate; past this many per
# file the messages go on without a suggestion (100,000 misspelt keys took 28 s).
MAX_SUGGESTIONS = 200

# Absolute rates (link, class, group, per host): tc keeps rates as 64-bit
# bytes per second, and nothing an office buys is faster than this.
MAX_RATE_BITS_PER_SECOND = 10**12  # 1000gbit

# Digits of any whole number in a policy; Python refuses int() past 4,300
# digits, and no value of ours needs more than this.
MAX_NUMBER_DIGITS = 20

# `gatewayd apply --confirm-within SECONDS`: long enough to test a change by
# hand, short enough that a forgotten change still reverts today.
MAX_CONFIRM_WITHIN_SECONDS = 3600.0


def limit_message(subject: str, count: int, noun: str, limit: int) -> str:
    """'the policy has 120,000 rules; the limit is 10,000': what every refusal says."""
    return f"{subject} has {count:,} {noun}; the limit is {limit:,}"

