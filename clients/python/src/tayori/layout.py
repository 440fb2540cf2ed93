"""Tayori's key layout (schema 2) as the CRM sees it: partitions and stream names.

The same function as Tayori's `src/keys.rs`: a job's partition is CRC-32 of its
`customer_id` (its `id` without one) mod `partitions`; every key of partition k
carries the hash tag `{k}`, so on a Redis Cluster a partition lives in one slot.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

#: The layout version this client writes and reads (`{prefix}:schema` field `version`).
SCHEMA_VERSION = "2"
#: Tayori's upper bound for `redis.partitions`.
MAX_PARTITIONS = 1024


class LayoutError(Exception):
    """Redis holds no Tayori layout, or one other than this client was told to use."""


def partition_key(job: Mapping[str, Any]) -> str:
    """What decides a job's partition: its `customer_id`, or its `id` without one."""
    customer = job.get("customer_id")
    if isinstance(customer, str) and customer:
        return customer
    job_id = job.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("job field `id`: a non-empty string is required")
    return job_id


def partition_of(job: Mapping[str, Any], partitions: int) -> int:
    """The job's partition: CRC-32 (zlib's) of `partition_key(job)` mod `partitions`."""
    return zlib.crc32(partition_key(job).encode("utf-8")) % partitions


def job_stream(prefix: str, partition: int, channel: str) -> str:
    """`{prefix}:{k}:jobs:{channel}`, e.g. `tayori:{0}:jobs:email`."""
    return f"{prefix}:{{{partition}}}:jobs:{channel}"


def results_stream(prefix: str, partition: int) -> str:
    """`{prefix}:{k}:results`, e.g. `tayori:{0}:results`."""
    return f"{prefix}:{{{partition}}}:results"


def schema_key(prefix: str) -> str:
    """`{prefix}:schema`: the hash where Tayori records `version` and `partitions`."""
    return f"{prefix}:schema"


def check_layout(recorded: Mapping[Any, Any], prefix: str, partitions: int | None) -> int:
    """The partition count to use, from the `{prefix}:schema` hash read from Redis.

    Refuses a Redis without the marker (Tayori writes it on its first start), one of
    another layout version, and one whose partition count differs from `partitions`
    (when given): enqueueing with a wrong N would put jobs where the daemon's
    partition function does not, and reading with a wrong N would miss events.
    """
    fields = {_text(k): _text(v) for k, v in recorded.items()}
    key = schema_key(prefix)
    if not fields:
        raise LayoutError(
            f"Redis has no {key}: no Tayori daemon has started on it with redis.prefix = "
            f"{prefix!r}; start `tayori run` once first, or check the prefix"
        )
    version = fields.get("version")
    if version != SCHEMA_VERSION:
        raise LayoutError(
            f"{key} says version {version!r}; this client knows layout {SCHEMA_VERSION}: "
            "upgrade the client, or migrate Tayori (`tayori migrate`)"
        )
    try:
        recorded_n = int(fields.get("partitions", ""))
    except ValueError:
        raise LayoutError(f"{key} field `partitions` is not a number: {fields.get('partitions')!r}") from None
    if not 1 <= recorded_n <= MAX_PARTITIONS:
        raise LayoutError(f"{key} field `partitions` is out of range: {recorded_n}")
    if partitions is not None and partitions != recorded_n:
        raise LayoutError(
            f"Tayori's Redis is laid out for redis.partitions = {recorded_n} ({key}), but the "
            f"client was given partitions={partitions}: use {recorded_n} (or omit it to read it)"
        )
    return recorded_n


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)
