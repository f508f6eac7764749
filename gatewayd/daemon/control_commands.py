"""The commands the daemon answers on its control socket: status, apply, confirm.

The control server only dispatches by name; this table says what each name
does, from the daemon's floor, so control/ imports nothing from daemon/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gatewayd.control.confirm_window import confirm_window_seconds
from gatewayd.control.protocol import Reply
from gatewayd.control.server import CommandHandler
from gatewayd.daemon.changes import ChangeManager


def control_commands(status_report: Callable[[], dict[str, Any]],
                     changes: ChangeManager) -> dict[str, CommandHandler]:
    """Command name -> handler, in the order an unknown command's error lists them."""

    def status(_request: dict[str, Any], reply: Reply) -> None:
        reply({"ok": True, "status": status_report()})

    def apply(request: dict[str, Any], reply: Reply) -> None:
        confirm_within = request.get("confirm_within")
        try:  # checked again here: anything root runs can write to the control socket
            window = confirm_window_seconds(confirm_within) if confirm_within is not None else None
        except ValueError as error:
            reply({"ok": False, "error": str(error)})
            return
        changes.begin(str(request["policy"]), window, reply)

    def confirm(_request: dict[str, Any], reply: Reply) -> None:
        changes.confirm(reply)

    return {"status": status, "apply": apply, "confirm": confirm}
