"""Enqueueing jobs: one pipelined `XADD` per job to its partition's channel stream."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import redis
from redis.cluster import RedisCluster

from .cancels import Cancel, Until, active_cancels, cancels_key, fields_of, new_cancel
from .layout import check_layout, job_stream, partition_of, results_stream, schema_key

#: Jobs per pipeline round trip: bounds the client's and Redis's buffers while
#: keeping the round trips few (10,000 jobs = 10 round trips).
PIPELINE_CHUNK = 1000


class ReplicationError(Exception):
    """`WAIT` returned fewer replicas than asked for: the jobs are on the primary
    (their `entry_ids` are here) but a failover now could lose them. Enqueueing the
    same jobs again is safe: a job id seen twice is sent once."""

    def __init__(self, wanted: int, acked: int, entry_ids: list[str]) -> None:
        super().__init__(f"WAIT: {acked} of {wanted} replicas confirmed the jobs")
        self.wanted = wanted
        self.acked = acked
        self.entry_ids = entry_ids


class Tayori:
    """Tayori's queue on a Redis (redis-py `Redis` or `RedisCluster`).

    Reads the layout Tayori recorded (`{prefix}:schema`) and refuses to work on one
    other than `partitions` (when given): see `layout.check_layout`.
    """

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        *,
        prefix: str = "tayori",
        partitions: int | None = None,
    ) -> None:
        # Any: redis-py's own annotations differ between its versions (and between
        # RESP2 and RESP3 replies); the replies are checked where they are used.
        self.redis: Any = client
        self.prefix = prefix
        self.cluster = isinstance(client, RedisCluster)
        self.partitions = check_layout(client.hgetall(schema_key(prefix)), prefix, partitions)

    def results_streams(self) -> list[str]:
        """Every partition's results stream: a reader must read them all."""
        return [results_stream(self.prefix, k) for k in range(self.partitions)]

    def stream_of(self, job: Mapping[str, Any]) -> str:
        """The stream a job goes to: its channel's (for `best`, its first channel's)
        in its partition."""
        channel = job.get("channel")
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"job {job.get('id')!r}: field `channel`: a non-empty string is required")
        if channel == "best":
            channels = job.get("channels")
            if not isinstance(channels, list) or not channels or not isinstance(channels[0], str):
                raise ValueError(f"job {job.get('id')!r}: field `channels`: `best` needs a list of channels")
            channel = channels[0]
        return job_stream(self.prefix, partition_of(job, self.partitions), channel)

    def enqueue(self, job: Mapping[str, Any], **kwargs: Any) -> str:
        """One job; see `enqueue_many`."""
        return self.enqueue_many([job], **kwargs)[0]

    def enqueue_many(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> list[str]:
        """Adds each job to its stream, pipelined; returns the entry ids in order.

        Every job is checked and serialized before anything is written, so a bad job
        (no `id`, a naive `datetime`) raises `ValueError` and nothing is enqueued.
        `send_at`, `expires_at` and `send_at.best_between` may be timezone-aware
        `datetime`s (they become RFC 3339). On a Redis Cluster each partition gets
        its own pipelines (one slot each). With `wait_replicas`, `WAIT` follows (on
        each master written to) and `ReplicationError` says when fewer confirmed.
        A Redis error mid-way leaves the earlier jobs enqueued; enqueueing them all
        again is safe (a job id seen twice is sent once).
        """
        prepared = [(self.stream_of(job), _serialize(job)) for job in jobs]
        ids: list[str] = [""] * len(prepared)
        groups: dict[str, list[int]] = {}
        for i, (stream, _) in enumerate(prepared):
            # Standalone: one group, any order. Cluster: one group per partition (slot).
            groups.setdefault(stream.split("}", 1)[0] if self.cluster else "", []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), PIPELINE_CHUNK):
                chunk = indices[start : start + PIPELINE_CHUNK]
                pipe = self.redis.pipeline(transaction=False) if not self.cluster else self.redis.pipeline()
                for i in chunk:
                    stream, payload = prepared[i]
                    pipe.xadd(stream, {"job": payload})
                for i, entry_id in zip(chunk, pipe.execute()):
                    ids[i] = _text(entry_id)
        if wait_replicas > 0 and prepared:
            self._wait(wait_replicas, wait_timeout_ms, [prepared[ix[0]][0] for ix in groups.values()], ids)
        return ids

    def cancel_campaign(
        self,
        campaign: str,
        *,
        reason: str,
        channel: str | None = None,
        by: str | None = None,
        until: Until | None = None,
    ) -> Cancel:
        """Stops every job of `campaign` (on `channel` only, when given) wherever it
        waits, on every daemon within seconds; jobs of it enqueued until `until` are
        cancelled too. Each ends with one `cancelled` event carrying `reason` and `by`
        (`cancelled_by`; default user@host). `until`: an aware datetime, a timedelta
        or seconds from now; default 24 h. Returns what was written; a cancel of the
        same target is replaced. Raises `ValueError` naming a bad argument."""
        return self._record(new_cancel("campaign", campaign, reason=reason, channel=channel, by=by, until=until))

    def cancel_job(self, job_id: str, *, reason: str, by: str | None = None, until: Until | None = None) -> Cancel:
        """Stops one job (on every channel it goes through); see `cancel_campaign`."""
        return self._record(new_cancel("job", job_id, reason=reason, by=by, until=until))

    def cancels(self) -> list[Cancel]:
        """The active cancels, oldest first (lapsed and unreadable fields left out,
        as the daemons leave them out)."""
        return active_cancels(self.redis.hgetall(cancels_key(self.prefix)))

    def lift(self, target_id: str) -> int:
        """Removes every cancel of the campaign or job `target_id` (every channel's);
        returns how many were removed. Jobs already cancelled stay cancelled; jobs
        enqueued from now on are sent."""
        key = cancels_key(self.prefix)
        fields = fields_of(self.redis.hgetall(key), target_id)
        return int(self.redis.hdel(key, *fields)) if fields else 0

    def _record(self, cancel: Cancel) -> Cancel:
        self.redis.hset(cancels_key(self.prefix), cancel.field, cancel.to_json())
        return cancel

    def _wait(self, wanted: int, timeout_ms: int, streams: list[str], ids: list[str]) -> None:
        if self.cluster:
            # One WAIT per master written to (a partition's node).
            acked = min(
                int(self.redis.execute_command("WAIT", wanted, timeout_ms, target_nodes=self.redis.get_node_from_key(s)))
                for s in streams
            )
        else:
            acked = int(self.redis.execute_command("WAIT", wanted, timeout_ms))
        if acked < wanted:
            raise ReplicationError(wanted, acked, ids)


#: RFC 3339 with an offset: a time without one would be read in a zone the CRM did not mean.
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def rfc3339(value: datetime, field: str) -> str:
    """A timezone-aware datetime as RFC 3339; a naive one is refused (Tayori needs the
    offset, and guessing the CRM's zone would shift sends by hours)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"job field `{field}`: a naive datetime ({value.isoformat()}) has no time zone; use an aware one (e.g. datetime.now(timezone.utc))")
    return value.isoformat()


def _serialize(job: Mapping[str, Any]) -> str:
    job = dict(job)
    job_id = job.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("job field `id`: a non-empty string is required")
    for field in ("send_at", "expires_at"):
        if field in job:
            job[field] = _time(job[field], field)
    send_at = job.get("send_at")
    if isinstance(send_at, Mapping) and isinstance(send_at.get("best_between"), list):
        job["send_at"] = {**send_at, "best_between": [_time(v, "send_at.best_between") for v in send_at["best_between"]]}

    def other(value: Any) -> Any:
        if isinstance(value, datetime):
            return rfc3339(value, f"{job_id}: a datetime")
        raise TypeError(f"job {job_id!r}: {type(value).__name__} is not JSON serializable")

    try:
        return json.dumps(job, ensure_ascii=False, separators=(",", ":"), default=other)
    except TypeError as e:
        raise ValueError(str(e)) from None


def _time(value: Any, field: str) -> Any:
    """A job's time field: an aware datetime becomes RFC 3339; a string must carry an offset."""
    if isinstance(value, datetime):
        return rfc3339(value, field)
    if isinstance(value, str) and not RFC3339.fullmatch(value):
        raise ValueError(f"job field `{field}`: {value!r} is not RFC 3339 with an offset (e.g. 2026-11-23T09:00:00+09:00)")
    return value


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)
