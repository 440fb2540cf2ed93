"""Reading Tayori's events: a consumer group on every partition's results stream,
recovery of pending entries, dedupe by `event_id`, acknowledge after the handler."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import redis

from .client import Tayori

log = logging.getLogger("tayori.consumer")

#: Event types that end a job's path (one per job entry). A `bounced` at the relay
#: is one too when no `fallback` event follows it; see the README's "## Events".
TERMINAL_TYPES = frozenset({"sent", "failed", "duplicate", "expired", "suppressed", "cancelled"})


class Event(TypedDict, total=False):
    """An event (README "## Events"): the common fields; each type adds its own."""

    type: str
    event_id: str
    at: str
    job_id: str | None
    campaign: str | None
    customer_id: str | None
    channel: str
    attempt: int


Handler = Callable[[dict[str, Any]], object]


class RecentIds:
    """The last `capacity` event ids handled: a bounded memory, so a long-running
    consumer does not grow without end. It covers repeats within one process (an
    entry claimed back, an event written again by a `tayori migrate`); across
    restarts the handler itself must be idempotent (store events keyed by
    `event_id`)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


@dataclass
class ConsumerStats:
    handled: int = 0  # the handler returned
    repeats: int = 0  # skipped: event_id already handled by this process
    failed: int = 0  # the handler raised: left pending, retried later
    recovered: int = 0  # own pending entries read again at start
    claimed: int = 0  # entries taken over by XAUTOCLAIM
    malformed: int = 0  # entries without a JSON `event` field: logged and acknowledged


class ResultsConsumer:
    """One member (`consumer`) of the CRM's consumer group (`group`) on every results
    stream.

    The consumer name must be stable across restarts of the same process (a host
    name, a StatefulSet pod name): a restarted consumer first reads its own pending
    entries (those it had read but not acknowledged when it stopped). Entries left
    pending by others (a consumer that never came back) are taken over with
    `XAUTOCLAIM` once idle longer than `claim_idle_ms`. An entry is acknowledged
    only after the handler returned; a handler that raises leaves it pending, to be
    retried after `claim_idle_ms` (or at the next start).
    """

    def __init__(
        self,
        tayori: Tayori,
        group: str,
        consumer: str | None = None,
        *,
        start_id: str = "0",
        claim_idle_ms: int = 60_000,
        count: int = 100,
        block_ms: int = 1000,
        remember: int = 100_000,
    ) -> None:
        self.tayori = tayori
        self.redis: Any = tayori.redis
        self.group = group
        self.consumer = consumer or socket.gethostname()
        self.start_id = start_id  # where a new group starts: "0" = every event the stream holds, "$" = new ones
        self.claim_idle_ms = claim_idle_ms
        self.count = count
        self.block_ms = block_ms
        self.streams = tayori.results_streams()
        self.recent = RecentIds(remember)
        self.stats = ConsumerStats()

    def create_groups(self) -> None:
        """The group on every results stream (created with the stream when missing)."""
        for stream in self.streams:
            try:
                self.redis.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):  # the group exists already: keep its position
                    raise

    def run(self, handler: Handler, stop: threading.Event | None = None) -> None:
        """Creates the groups, recovers own pending entries, then reads new events and
        claims stale ones until `stop` is set."""
        stop = stop or threading.Event()
        self.create_groups()
        self.recover_own(handler)
        claim_every = max(self.claim_idle_ms / 2, 100) / 1000
        next_claim = time.monotonic()
        while not stop.is_set():
            if time.monotonic() >= next_claim:
                self.claim_stale(handler)
                next_claim = time.monotonic() + claim_every
            if self.poll(handler) == 0 and self.tayori.cluster:
                stop.wait(min(self.block_ms, 500) / 1000)  # no BLOCK across slots: wait a little

    def recover_own(self, handler: Handler) -> int:
        """Handles this consumer's own pending entries (`XREADGROUP … 0`)."""
        n = 0
        for stream in self.streams:
            last = "0"
            while True:
                reply = self.redis.xreadgroup(self.group, self.consumer, {stream: last}, count=self.count)
                entries = [e for _, es in _by_stream(reply) for e in es]
                if not entries:
                    break
                for entry_id, fields in entries:
                    self._handle(stream, entry_id, fields, handler)
                    n += 1
                last = _text(entries[-1][0])
        self.stats.recovered += n
        return n

    def claim_stale(self, handler: Handler) -> int:
        """Takes over and handles entries pending longer than `claim_idle_ms` (others'
        after a crash, or own whose handler raised)."""
        n = 0
        for stream in self.streams:
            cursor = "0-0"
            while True:
                reply = self.redis.xautoclaim(
                    stream, self.group, self.consumer, self.claim_idle_ms, start_id=cursor, count=self.count
                )
                cursor, entries = _text(reply[0]), reply[1]
                for entry_id, fields in entries:
                    self._handle(stream, entry_id, fields, handler)
                    n += 1
                if cursor == "0-0":
                    break
        self.stats.claimed += n
        return n

    def poll(self, handler: Handler) -> int:
        """Reads and handles new events (one `XREADGROUP >` on a standalone Redis,
        blocking up to `block_ms`; one per partition on a cluster)."""
        replies: list[tuple[Any, Any]] = []
        if self.tayori.cluster:
            for stream in self.streams:
                replies += _by_stream(self.redis.xreadgroup(self.group, self.consumer, {stream: ">"}, count=self.count))
        else:
            replies = _by_stream(
                self.redis.xreadgroup(
                    self.group, self.consumer, dict.fromkeys(self.streams, ">"), count=self.count, block=self.block_ms
                )
            )
        n = 0
        for stream, entries in replies:
            for entry_id, fields in entries:
                self._handle(_text(stream), entry_id, fields, handler)
                n += 1
        return n

    def _handle(self, stream: str, entry_id: Any, fields: Any, handler: Handler) -> None:
        raw = None
        if fields:
            raw = fields.get(b"event", fields.get("event"))
        if raw is None:
            # Deleted under us (trimmed) or not written by Tayori: nothing to handle.
            if fields:
                log.error("%s %s has no `event` field; acknowledged without handling", stream, _text(entry_id))
                self.stats.malformed += 1
            self.redis.xack(stream, self.group, entry_id)
            return
        try:
            event = json.loads(raw)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            log.error("%s %s: `event` is not a JSON object (%s); acknowledged without handling", stream, _text(entry_id), e)
            self.stats.malformed += 1
            self.redis.xack(stream, self.group, entry_id)
            return
        event_id = event.get("event_id")
        if isinstance(event_id, str) and event_id in self.recent:
            self.stats.repeats += 1
            self.redis.xack(stream, self.group, entry_id)
            return
        try:
            handler(event)
        except Exception:
            self.stats.failed += 1
            log.exception("the handler raised on %s %s; left pending, retried later", stream, _text(entry_id))
            return
        self.stats.handled += 1
        if isinstance(event_id, str):
            self.recent.add(event_id)  # before the XACK: a redelivery after a failed XACK is then a repeat
        self.redis.xack(stream, self.group, entry_id)


def _by_stream(reply: Any) -> list[tuple[Any, Any]]:
    """An XREADGROUP reply as (stream, entries) pairs: a list of pairs over RESP2, a
    map over RESP3 (`protocol=3`), nothing on a timeout. Entries are (id, fields)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        # redis-py 8 wraps each stream's entries in one more list over RESP3.
        return [(stream, [e for chunk in v for e in chunk] if v and isinstance(v[0], list) else v) for stream, v in reply.items()]
    return [(stream, entries) for stream, entries in reply]


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)
