"""Which DNS answers may teach the classifier an address, and how much one client may teach.

A learned address decides every office flow to it, whoever the client, so an
answer is evidence only when nobody on the LAN can have made it up:

  * where it came from: the kernel tells, in the packet mark, whether an
    answer comes from a resolver the policy names (`dns.resolvers`), from the
    router's own resolver (sent by this box: nothing on the LAN can forge it),
    or from anyone else, which never teaches (AnswerOrigin);
  * what it answers: a named resolver's answer must match a query seen on the
    same flow (transaction id, name and type); the query is consumed, so one
    query teaches once and an off-path forgery with a guessed port but the
    wrong id teaches nothing (PendingQueries);
  * how much: each client (the LAN host that asked) may write a bounded number
    of new or changed entries per minute (a token bucket) and hold a bounded
    share of the map, so one host cannot flood everybody's entries out
    (LearnedAddresses). A refresh of an entry that stays as it is costs nothing.

An address the catalog or the policy lists (without ports) is never learned:
the engine checks that before it calls `learn` (it owns the catalog tables).
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from gatewayd.classify.memories import ExpiringMemory

QUERY_WAIT_SECONDS = 15.0  # a resolver that answers later than this is answering nobody (clients give up at 5-10 s)
MAX_PENDING_QUERIES = 16  # per flow: a stub sends A and AAAA, a forwarder a few more; older ones go first

LEARN_RATE_PER_MINUTE = 300  # new or changed entries one client may write, sustained
LEARN_BURST = 300  # ... and at once (a browser start resolves a few dozen catalog names)
CLIENT_SHARE = 32  # one client holds at most 1/CLIENT_SHARE of the learned map
MAX_ALLOWANCES = 65536  # clients whose token buckets are tracked; the least recently used go first
EXPIRED_SWEEP = 64  # a client at its share: at most this many of its oldest entries checked for expiry

# Bounded label values of gatewayd_dns_answers_total{result} and gatewayd_dns_addresses_refused_total{reason}.
LEARNED = "learned"  # at least one address learned, changed or refreshed
REFUSED = "refused"  # every address it named was refused (see the reasons)
NO_APP = "no_app"  # no address of a name an app owns
NOT_A_RESOLVER = "not_a_resolver"  # from a server the policy does not name
UNSOLICITED = "unsolicited"  # no query waiting on its flow
MISMATCH = "mismatch"  # queries wait on its flow, but none with its id, name and type
ANSWER_RESULTS = (LEARNED, REFUSED, NO_APP, NOT_A_RESOLVER, UNSOLICITED, MISMATCH)
CATALOG_ADDRESS = "catalog_address"  # the catalog or the policy lists it: the list wins
RATE_LIMITED = "rate_limited"  # its client's token bucket is empty
HOST_SHARE = "host_share"  # its client holds its whole share of the map
REFUSAL_REASONS = (CATALOG_ADDRESS, RATE_LIMITED, HOST_SHARE)


class AnswerOrigin(enum.Enum):
    NAMED_RESOLVER = "named_resolver"  # learned if it matches a query on its flow
    ROUTER = "router"  # the router's own resolver: made on this box, learned as it is
    OTHER = "other"  # anyone else: never learned


@dataclass
class DnsLearningStats:
    answers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ANSWER_RESULTS, 0))
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSAL_REASONS, 0))


class PendingQueries:
    """The queries a client sent on one flow that no answer has matched yet."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: OrderedDict[tuple[int, str, int], float] = OrderedDict()  # (id, name, type) -> until

    def add(self, transaction_id: int, name: str, rtype: int, now: float) -> None:
        key = (transaction_id, name, rtype)
        self._waiting.pop(key, None)
        self._waiting[key] = now + QUERY_WAIT_SECONDS
        if len(self._waiting) > MAX_PENDING_QUERIES:
            self._waiting.popitem(last=False)

    def _drop_expired(self, now: float) -> None:
        waiting = self._waiting
        while waiting and next(iter(waiting.values())) < now:  # added in time order: the oldest expire first
            waiting.popitem(last=False)

    def waiting(self, now: float) -> int:
        """How many queries still wait for their answer."""
        self._drop_expired(now)
        return len(self._waiting)

    def take(self, transaction_id: int, name: str, rtype: int, now: float) -> str | None:
        """None when a waiting query matches (it is consumed); else UNSOLICITED or MISMATCH."""
        self._drop_expired(now)
        waiting = self._waiting
        if waiting.pop((transaction_id, name, rtype), None) is not None:
            return None
        return MISMATCH if waiting else UNSOLICITED


@dataclass(frozen=True, slots=True)
class LearnedEntry:
    app: str
    name: str  # the domain that matched
    client: bytes  # who asked: the entry counts against this client's share


class Learning(enum.Enum):
    NEW = "new"
    CHANGED = "changed"  # the address had another app: the kernel entry must be replaced
    REFRESHED = "refreshed"  # same app, new expiry


class _Allowances:
    """A token bucket per client: `rate_per_minute` tokens a minute, at most `burst` saved up."""

    def __init__(self, rate_per_minute: float, burst: float) -> None:
        self._per_second = rate_per_minute / 60.0
        self._burst = burst
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def take(self, client: bytes, now: float) -> bool:
        tokens, at = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._per_second)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > MAX_ALLOWANCES:  # the longest idle bucket has refilled by now, most likely
            self._buckets.popitem(last=False)
        return allowed


class LearnedAddresses:
    """Packed server address -> LearnedEntry until its TTL, bounded in total and per client."""

    def __init__(self, capacity: int, rate_per_minute: float = LEARN_RATE_PER_MINUTE,
                 burst: float = LEARN_BURST, client_share: int | None = None) -> None:
        self._memory: ExpiringMemory[bytes, LearnedEntry] = ExpiringMemory(capacity, self._dropped)
        self.client_share = client_share if client_share is not None else max(1, capacity // CLIENT_SHARE)
        self._allowances = _Allowances(rate_per_minute, burst)
        # client -> its entries, oldest written first (to count its share and sweep its expired ones)
        self._written_by: dict[bytes, OrderedDict[bytes, None]] = {}

    def __len__(self) -> int:
        return len(self._memory)

    def recall(self, address: bytes, now: float, forget_expired: bool = False) -> tuple[str, str] | None:
        """(app, name) for the address, unless absent or expired."""
        entry = self._memory.recall(address, now, forget_expired)
        return None if entry is None else (entry.app, entry.name)

    def held_by(self, client: bytes) -> int:
        written = self._written_by.get(client)
        return len(written) if written else 0

    def learn(self, address: bytes, app: str, name: str, client: bytes, expires_at: float,
              now: float) -> Learning | str:
        """Remember what an answer said; a Learning, or the refusal reason (RATE_LIMITED, HOST_SHARE)."""
        stored = self._memory.entry(address)
        if stored is not None and stored[1] >= now and stored[0].app == app:
            # Same fact again: a new expiry, the entry stays its first writer's.
            self._memory.remember(address, LearnedEntry(app, name, stored[0].client), expires_at)
            self._wrote(stored[0].client, address)
            return Learning.REFRESHED
        if self.held_by(client) >= self.client_share and not self._sweep_expired(client, now):
            return HOST_SHARE
        if not self._allowances.take(client, now):
            return RATE_LIMITED
        if stored is not None:
            self._disown(stored[0].client, address)
        self._memory.remember(address, LearnedEntry(app, name, client), expires_at)
        self._wrote(client, address)
        live_before = stored is not None and stored[1] >= now
        return Learning.CHANGED if live_before else Learning.NEW

    def revise(self, revised: Callable[[bytes, str, str], str | None]) -> None:
        """Re-decide every entry's app with `revised(address, app, name)`; None forgets the entry."""
        def rewritten(address: bytes, entry: LearnedEntry) -> LearnedEntry | None:
            app = revised(address, entry.app, entry.name)
            return None if app is None else LearnedEntry(app, entry.name, entry.client)

        self._memory.revise(rewritten)

    # --- each client's books ---

    def _wrote(self, client: bytes, address: bytes) -> None:
        written = self._written_by.setdefault(client, OrderedDict())
        written.pop(address, None)
        written[address] = None

    def _disown(self, client: bytes, address: bytes) -> None:
        written = self._written_by.get(client)
        if written is not None:
            written.pop(address, None)
            if not written:
                del self._written_by[client]

    def _dropped(self, address: bytes, entry: LearnedEntry) -> None:
        self._disown(entry.client, address)

    def _sweep_expired(self, client: bytes, now: float) -> bool:
        """Forget up to EXPIRED_SWEEP of the client's oldest entries if expired; True if that made room."""
        written = self._written_by.get(client)
        if not written:
            return True
        for address in list(itertools.islice(written, EXPIRED_SWEEP)):
            self._memory.recall(address, now, forget_expired=True)
        return self.held_by(client) < self.client_share
