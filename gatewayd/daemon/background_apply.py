"""Run a policy's apply beside the verdict loop, which keeps giving verdicts until it returns.

The apply's nft transaction of a big policy takes a good part of a second in
the kernel, and a queued packet may wait at most 5 ms for its verdict
(issue 12). libnftables is called through ctypes, which releases the GIL for
the call, so the loop thread can serve the queue while another thread waits
for the kernel. The loop gives the running plan's verdicts meanwhile; the
caller switches to the new plan once the apply has returned (the table is in
force then; between the commit and that switch an app both plans know keeps
its number, compile/numbering.py, so those verdicts still mean the same app).
Only the queue is served: nothing else on the loop touches the kernel while
the apply does.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from gatewayd.daemon.policy_builder import BUILD_SWITCH_INTERVAL


def run_beside_loop(work: Callable[[], None], serve: Callable[[], None], wake: Callable[[], None]) -> None:
    """Run `work` in a thread and call `serve` (which waits a bounded time for something to serve)
    until it is done; raise what `work` raised. `wake` makes a waiting `serve` return early."""
    finished = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the loop thread, which raises it as the apply's caller
            failures.append(exc)
        finally:
            finished.set()
            wake()

    thread = threading.Thread(target=run, name="policy-apply", daemon=True)
    # The apply's Python part (listings, scripts) would otherwise hold the GIL up to 5 ms at a time.
    default_interval = sys.getswitchinterval()
    sys.setswitchinterval(BUILD_SWITCH_INTERVAL)
    try:
        thread.start()
        while not finished.is_set():
            serve()
        thread.join()
    finally:
        sys.setswitchinterval(default_interval)
    if failures:
        raise failures[0]
