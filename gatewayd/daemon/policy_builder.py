"""Load, validate and compile a policy off the verdict path, one build at a time.

A 100,000-domain policy takes seconds to parse and index; done in the main
loop, queued packets would wait all that time for their verdicts (and the
systemd watchdog would starve). A worker thread does the pure-Python part --
read, validate, compile against the running plan, build the classifier's
tables -- and the main loop only applies the finished plan (one nft
transaction) and swaps it in.

Why a thread and not a child process: the main process needs the plan and the
classifier tables as objects. Unpickling a 5,000-host plan takes 65-160 ms and
the tables 0.5-0.8 s, each one C call that holds the GIL throughout, so the
verdict path would stall longer than with a thread. A thread shares the GIL in
slices instead: while it builds, the switch interval is lowered from 5 ms to
BUILD_SWITCH_INTERVAL so the main loop gets the GIL back within that time.

A file that is not a regular one (a FIFO blocks `open` until a writer comes)
is refused before it is opened for reading; whatever else might block, it
blocks the worker, never the verdicts.
"""

from __future__ import annotations

import gc
import logging
import os
import stat
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from gatewayd.classify.tables import ClassifierTables
from gatewayd.compile.plan import Plan, compile_plan
from gatewayd.policy.applications import HeldDomains
from gatewayd.policy.errors import PolicyError, PolicyIssue
from gatewayd.policy.loader import load_policy_with_text
from gatewayd.policy.model import Location, Policy

log = logging.getLogger("gatewayd.daemon")

# Seconds a thread may hold the GIL while another waits for it (CPython's default: 0.005).
BUILD_SWITCH_INTERVAL = 0.0005
SLOW_BUILD_SECONDS = 60.0  # a build still running after this long is logged once


class StepClock:
    """Seconds spent in each step of a policy switch, for the reload's log line."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self._last = self.started
        self.steps: dict[str, float] = {}

    def step_done(self, step: str) -> None:
        now = time.perf_counter()
        self.steps[step] = now - self._last
        self._last = now

    def total(self) -> float:
        return time.perf_counter() - self.started

    def __str__(self) -> str:
        return " ".join(f"{step}_seconds={value:.3f}" for step, value in self.steps.items())


@dataclass(frozen=True)
class BuildRequest:
    """A file to read, validate and compile, or an already validated policy to compile (a revert)."""

    path: str | None = None
    policy: Policy | None = None


@dataclass(frozen=True)
class BuiltPolicy:
    plan: Plan
    text: str | None  # the file's text (what last-known-good keeps); None for a policy given as an object
    tables: ClassifierTables | None  # None when the apps are those of the running plan
    clock: StepClock
    running_generation: int  # the plan was compiled against this generation


# What a finished build hands the main loop: the built policy, or the error that stopped it.
BuildOutcome = BuiltPolicy | PolicyError
BuildDone = Callable[[BuildOutcome], None]


@dataclass(frozen=True)
class SwitchResult:
    """How a policy switch (build, then apply and adopt on the main loop) ended."""

    plan: Plan | None  # the plan now in force; None when the switch was refused
    text: str | None = None
    issues: tuple[PolicyIssue, ...] = ()  # the policy does not load: nothing changed
    apply_error: str | None = None  # the kernel refused it: nothing changed
    clock: StepClock | None = None


SwitchDone = Callable[[SwitchResult], None]


def refuse_unless_regular_file(path: str) -> None:
    """PolicyError unless `path` is a regular file; other open errors are left to the loader's messages.

    O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError):
        return
    try:
        mode = os.fstat(descriptor).st_mode
    finally:
        os.close(descriptor)
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # the loader words "is a directory" itself
        raise PolicyError([PolicyIssue(Location(path, 1, 1),
                                       "cannot read policy: not a regular file (a FIFO, socket or device); "
                                       "expected a YAML file")])


def build_policy(request: BuildRequest, running: Plan | None, running_generation: int,
                 catalog_path: str | None, held_domains: HeldDomains | None = None) -> BuiltPolicy:
    """The whole GIL-heavy part of a switch; raises PolicyError. Runs in the worker thread.

    `held_domains` (the running classifier's domains) lets the new policy share the running one's
    domain strings: read from the tables, never written, so the main loop may go on using them."""
    clock = StepClock()
    if request.policy is not None:
        policy, text = request.policy, None
    else:
        assert request.path is not None
        refuse_unless_regular_file(request.path)
        policy, text = load_policy_with_text(request.path, catalog_path, held_domains)
    clock.step_done("load")
    plan = compile_plan(policy, running)
    clock.step_done("compile")
    tables = None
    if running is None or running.policy.applications != plan.policy.applications:
        # Rebuilt only when the apps changed: 100,000 blocklist domains take a noticeable while.
        tables = ClassifierTables.build(plan.policy.applications.values())
    clock.step_done("classifier")
    return BuiltPolicy(plan, text, tables, clock, running_generation)


class PolicyBuilder:
    """One build at a time in a worker thread; the main loop collects it with `poll`."""

    def __init__(self, catalog_path: str | None, wake: Callable[[], None]) -> None:
        self.catalog_path = catalog_path
        self._wake = wake  # makes the main loop's select return when a build finishes
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy-build")
        self._running: tuple[Future[BuiltPolicy], BuildDone, float, str] | None = None
        self._slow_logged = False
        self._default_switch_interval = sys.getswitchinterval()
        self._gc_was_enabled = False

    @property
    def busy(self) -> bool:
        return self._running is not None

    def start(self, request: BuildRequest, running: Plan | None, running_generation: int,
              done: BuildDone, held_domains: HeldDomains | None = None) -> bool:
        """Start a build; False (nothing started) while another one runs."""
        if self._running is not None:
            return False
        # No cyclic-GC passes while the policy is built: a big policy makes hundreds of thousands
        # of objects, and every pass over the old generations would walk them all, GIL held.
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        sys.setswitchinterval(BUILD_SWITCH_INTERVAL)
        future = self._workers.submit(build_policy, request, running, running_generation, self.catalog_path,
                                      held_domains)
        future.add_done_callback(lambda _future: self._wake())
        source = request.path or (request.policy.source if request.policy else "policy")
        self._running = (future, done, time.monotonic(), source)
        self._slow_logged = False
        return True

    def poll(self, now: float) -> None:
        """From the main loop: hand a finished build to its `done` (on the main thread)."""
        if self._running is None:
            return
        future, done, started, source = self._running
        if not future.done():
            if now - started > SLOW_BUILD_SECONDS and not self._slow_logged:
                self._slow_logged = True
                log.warning("event=policy_build_slow seconds=%.0f reason=\"still reading or compiling the policy; "
                            "verdicts go on, further reloads wait\"", now - started)
            return
        self._running = None
        sys.setswitchinterval(self._default_switch_interval)
        if self._gc_was_enabled:
            gc.enable()
        outcome: BuildOutcome
        try:
            outcome = future.result()
        except PolicyError as exc:
            outcome = exc
        except Exception as exc:  # a bug in the build must not take the gateway down
            log.exception("event=policy_build_failed")
            outcome = PolicyError([PolicyIssue(Location(source, 1, 1), "internal error while building the policy "
                                               f"({type(exc).__name__}: {exc})")])
        done(outcome)

    def close(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)
