"""The commit-confirm window of `gatewayd apply --confirm-within SECONDS`, checked on both ends.

`nan` never passes a deadline (and the pending change then blocks every later
reload), `inf` never reverts, and a negative or zero window reverts before
anyone could confirm. The command line refuses them; the daemon refuses them
again, because anything root runs can write to the control socket.
"""

from __future__ import annotations

import argparse
import math

from gatewayd.policy.limits import MAX_CONFIRM_WITHIN_SECONDS


def confirm_window_seconds(value: object) -> float:
    """`value` as seconds if finite, more than 0 and at most MAX_CONFIRM_WITHIN_SECONDS; ValueError otherwise."""
    seconds = None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except (ValueError, OverflowError):
            seconds = None
    if seconds is None or not math.isfinite(seconds) or not 0 < seconds <= MAX_CONFIRM_WITHIN_SECONDS:
        raise ValueError(f"confirm_within must be a number of seconds more than 0 and at most "
                         f"{MAX_CONFIRM_WITHIN_SECONDS:g} (got {str(value)[:40]!r})")
    return seconds


def confirm_window_argument(text: str) -> float:
    """argparse type for --confirm-within: the same check, as a usage error."""
    try:
        return confirm_window_seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
