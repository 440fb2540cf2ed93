"""The client against a real redis-server (TAYORI_TEST_REDIS_URL, set by the Rust
test tests/clients.rs). Run: python -m unittest discover -s clients/python/tests"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import redis

import tayori
from tayori import Cancel, LayoutError, ReplicationError, ResultsConsumer, Tayori, partition_of

HERE = Path(__file__).resolve().parent


def connect() -> redis.Redis:
    url = os.environ.get("TAYORI_TEST_REDIS_URL")
    if not url:
        raise RuntimeError("TAYORI_TEST_REDIS_URL is not set (tests/clients.rs sets it to its redis-server)")
    return redis.Redis.from_url(url)


def fresh(r: redis.Redis, partitions: int) -> Tayori:
    """A Tayori on a prefix of its own, with the layout marker a daemon would write."""
    prefix = f"u{uuid.uuid4().hex[:8]}"
    r.hset(f"{prefix}:schema", mapping={"version": "2", "partitions": str(partitions)})
    return Tayori(r, prefix=prefix, partitions=partitions)


def add_event(r: redis.Redis, t: Tayori, k: int, event: dict[str, Any]) -> str:
    return r.xadd(f"{t.prefix}:{{{k}}}:results", {"event": json.dumps(event)}).decode()


class Types(unittest.TestCase):
    def test_job_types_match_the_schema(self) -> None:
        # Fails when docs/job.schema.json changed and job_types.py was not regenerated.
        gen = HERE.parent / "scripts" / "gen_job_types.py"
        out = subprocess.run([sys.executable, str(gen), "--check"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_job_typed_dict_requires_id_and_channel(self) -> None:
        self.assertEqual(tayori.Job.__required_keys__, frozenset({"id", "channel"}))


class Partitions(unittest.TestCase):
    def test_the_documented_function(self) -> None:
        # The table of tests/partitions.rs (Python's zlib.crc32, mod 4).
        expected = {"C-a1": 0, "C-a2": 2, "C-a3": 0, "C-a4": 3, "C-a5": 1, "C-a6": 3, "C-a7": 1, "C-a8": 0}
        for customer, k in expected.items():
            self.assertEqual(partition_of({"id": "x", "customer_id": customer}, 4), k, customer)
        # Without a customer_id, the job id decides.
        self.assertEqual(partition_of({"id": "C-a2"}, 4), 2)
        self.assertEqual(partition_of({"id": "C-a2", "customer_id": None}, 4), 2)


class Enqueue(unittest.TestCase):
    def setUp(self) -> None:
        self.r = connect()

    def test_jobs_land_in_their_partitions_in_order_with_their_ids(self) -> None:
        t = fresh(self.r, 4)
        jobs = [{"id": f"j{i}", "customer_id": f"C-a{i}", "channel": "email"} for i in range(1, 9)]
        ids = t.enqueue_many(jobs)
        self.assertEqual(len(ids), 8)
        for job, entry_id in zip(jobs, ids):
            stream = f"{t.prefix}:{{{partition_of(job, 4)}}}:jobs:email"
            got = self.r.xrange(stream, entry_id, entry_id)
            self.assertEqual(len(got), 1, stream)
            self.assertEqual(json.loads(got[0][1][b"job"])["id"], job["id"])

    def test_more_jobs_than_one_pipeline(self) -> None:
        t = fresh(self.r, 1)
        ids = t.enqueue_many({"id": f"m{i}", "channel": "sms"} for i in range(tayori.PIPELINE_CHUNK + 7))
        self.assertEqual(len(set(ids)), tayori.PIPELINE_CHUNK + 7)
        self.assertEqual(self.r.xlen(f"{t.prefix}:{{0}}:jobs:sms"), tayori.PIPELINE_CHUNK + 7)

    def test_best_goes_to_its_first_channel(self) -> None:
        t = fresh(self.r, 1)
        t.enqueue({"id": "b1", "channel": "best", "channels": ["line", "email"]})
        self.assertEqual(self.r.xlen(f"{t.prefix}:{{0}}:jobs:line"), 1)

    def test_aware_datetimes_become_rfc3339(self) -> None:
        t = fresh(self.r, 1)
        jst = timezone(timedelta(hours=9))
        t.enqueue(
            {
                "id": "d1",
                "channel": "email",
                "send_at": datetime(2026, 11, 23, 9, 0, tzinfo=jst),
                "expires_at": datetime(2026, 11, 24, 0, 0, tzinfo=timezone.utc),
                "tags": ["a"],
            }
        )
        job = json.loads(self.r.xrange(f"{t.prefix}:{{0}}:jobs:email")[0][1][b"job"])
        self.assertEqual(job["send_at"], "2026-11-23T09:00:00+09:00")
        self.assertEqual(job["expires_at"], "2026-11-24T00:00:00+00:00")

    def test_naive_datetimes_and_bad_jobs_are_refused_before_anything_is_written(self) -> None:
        t = fresh(self.r, 1)
        good = {"id": "ok", "channel": "email"}
        cases = [
            ({"id": "n1", "channel": "email", "send_at": datetime(2026, 11, 23, 9, 0)}, "send_at"),
            ({"id": "n2", "channel": "email", "expires_at": datetime(2026, 11, 23, 9, 0)}, "expires_at"),
            ({"id": "n3", "channel": "email", "vars": {"when": datetime(2026, 1, 1)}}, "naive"),
            ({"id": "n5", "channel": "email", "send_at": "2026-11-23T09:00:00"}, "send_at"),
            ({"id": "n6", "channel": "email", "send_at": {"best_between": ["2026-11-23 09:00", "2026-11-24T09:00:00Z"]}}, "best_between"),
            ({"channel": "email"}, "`id`"),
            ({"id": "n4"}, "`channel`"),
        ]
        for bad, field in cases:
            with self.assertRaises(ValueError) as e:
                t.enqueue_many([good, bad])
            self.assertIn(field, str(e.exception))
        self.assertEqual(self.r.xlen(f"{t.prefix}:{{0}}:jobs:email"), 0)

    def test_a_wrong_partition_count_or_no_layout_is_refused(self) -> None:
        t = fresh(self.r, 4)
        with self.assertRaises(LayoutError) as e:
            Tayori(self.r, prefix=t.prefix, partitions=2)
        self.assertIn("redis.partitions = 4", str(e.exception))
        self.assertEqual(Tayori(self.r, prefix=t.prefix).partitions, 4)  # read when not given
        with self.assertRaises(LayoutError) as e:
            Tayori(self.r, prefix="no-such-prefix")
        self.assertIn("no-such-prefix:schema", str(e.exception))
        self.r.hset(f"{t.prefix}:schema", "version", "1")
        with self.assertRaises(LayoutError):
            Tayori(self.r, prefix=t.prefix)

    def test_wait_without_replicas_says_so(self) -> None:
        t = fresh(self.r, 1)
        with self.assertRaises(ReplicationError) as e:
            t.enqueue_many([{"id": "w1", "channel": "email"}], wait_replicas=1, wait_timeout_ms=10)
        self.assertEqual((e.exception.wanted, e.exception.acked, len(e.exception.entry_ids)), (1, 0, 1))
        self.assertEqual(self.r.xlen(f"{t.prefix}:{{0}}:jobs:email"), 1)  # on the primary all the same


class Consumer(unittest.TestCase):
    def setUp(self) -> None:
        self.r = connect()

    def pending(self, t: Tayori, group: str) -> int:
        return sum(self.r.xpending(s, group)["pending"] for s in t.results_streams())

    def test_repeated_event_ids_are_handled_once_and_all_acknowledged(self) -> None:
        t = fresh(self.r, 2)
        ev = {"type": "sent", "event_id": "j1/email/1/sent", "job_id": "j1"}
        add_event(self.r, t, 0, ev)
        add_event(self.r, t, 1, ev)  # e.g. written again by a migration
        add_event(self.r, t, 1, {"type": "sent", "event_id": "j2/email/1/sent", "job_id": "j2"})
        seen: list[str] = []
        c = ResultsConsumer(t, "crm", "c1")
        c.create_groups()
        while c.poll(lambda e: seen.append(e["event_id"])):
            pass
        self.assertEqual(sorted(seen), ["j1/email/1/sent", "j2/email/1/sent"])
        self.assertEqual((c.stats.handled, c.stats.repeats), (2, 1))
        self.assertEqual(self.pending(t, "crm"), 0)

    def test_a_raising_handler_leaves_the_entry_pending_until_it_succeeds(self) -> None:
        t = fresh(self.r, 1)
        add_event(self.r, t, 0, {"type": "sent", "event_id": "f1", "job_id": "f1"})
        calls: list[str] = []

        def flaky(e: dict[str, Any]) -> None:
            calls.append(e["event_id"])
            if len(calls) == 1:
                raise RuntimeError("the CRM's database is away")

        c = ResultsConsumer(t, "crm", "c1", claim_idle_ms=0)
        c.create_groups()
        with self.assertLogs("tayori.consumer", "ERROR"):
            self.assertEqual(c.poll(flaky), 1)
        self.assertEqual(self.pending(t, "crm"), 1)  # not acknowledged
        self.assertEqual(c.claim_stale(flaky), 1)  # its own entry, claimed back and retried
        self.assertEqual(calls, ["f1", "f1"])
        self.assertEqual(self.pending(t, "crm"), 0)

    def test_own_pending_entries_first_then_others_idle_ones(self) -> None:
        t = fresh(self.r, 2)
        for i in range(6):
            add_event(self.r, t, i % 2, {"type": "sent", "event_id": f"e{i}", "job_id": f"e{i}"})
        # Two consumers read three events each and die before acknowledging.
        ResultsConsumer(t, "crm", "a").create_groups()
        self.r.xreadgroup("crm", "a", {s: ">" for s in t.results_streams()}, count=2)
        self.r.xreadgroup("crm", "b", {s: ">" for s in t.results_streams()}, count=1)
        self.assertEqual(self.pending(t, "crm"), 6)
        got: list[str] = []
        a = ResultsConsumer(t, "crm", "a", claim_idle_ms=3_600_000)
        self.assertEqual(a.recover_own(lambda e: got.append(e["event_id"])), 4)
        self.assertEqual(a.claim_stale(lambda e: got.append(e["event_id"])), 0)  # b's entries are not idle for an hour
        self.assertEqual(self.pending(t, "crm"), 2)
        a.claim_idle_ms = 0
        self.assertEqual(a.claim_stale(lambda e: got.append(e["event_id"])), 2)
        self.assertEqual(sorted(got), [f"e{i}" for i in range(6)])
        self.assertEqual(self.pending(t, "crm"), 0)

    def test_entries_that_are_not_events_are_acknowledged_not_handled(self) -> None:
        t = fresh(self.r, 1)
        self.r.xadd(f"{t.prefix}:{{0}}:results", {"event": "not json"})
        self.r.xadd(f"{t.prefix}:{{0}}:results", {"other": "x"})
        c = ResultsConsumer(t, "crm", "c1")
        c.create_groups()
        with self.assertLogs("tayori.consumer", "ERROR"):
            self.assertEqual(c.poll(lambda e: self.fail(f"handled {e}")), 2)
        self.assertEqual(c.stats.malformed, 2)
        self.assertEqual(self.pending(t, "crm"), 0)


class Cancels(unittest.TestCase):
    def setUp(self) -> None:
        self.r = connect()

    def stored(self, t: Tayori, field: str) -> dict[str, Any]:
        raw = self.r.hget(f"{t.prefix}:cancels", field)
        self.assertIsNotNone(raw, field)
        value: dict[str, Any] = json.loads(raw)  # type: ignore[arg-type]
        return value

    def test_the_json_written_is_exactly_the_four_keys_the_daemon_reads(self) -> None:
        t = fresh(self.r, 1)
        c = t.cancel_campaign("spring/26 セール", reason="wrong coupon", by="crm")
        self.assertEqual((c.kind, c.id, c.channel, c.field), ("campaign", "spring/26 セール", None, "campaign/*/spring/26 セール"))
        value = self.stored(t, "campaign/*/spring/26 セール")
        # The daemon reads it with unknown keys denied: any other key would make it ignored.
        self.assertEqual(sorted(value), ["at_ms", "by", "reason", "until_ms"])
        self.assertEqual((value["reason"], value["by"]), ("wrong coupon", "crm"))
        self.assertIs(type(value["at_ms"]), int)
        self.assertIs(type(value["until_ms"]), int)
        self.assertEqual(value["until_ms"] - value["at_ms"], 24 * 3600 * 1000)  # the default: 24 h
        self.assertEqual(value["at_ms"], int(c.at.timestamp() * 1000))
        self.assertEqual(value["until_ms"], int(c.until.timestamp() * 1000))

    def test_one_channel_a_job_and_the_forms_of_until(self) -> None:
        t = fresh(self.r, 1)
        c = t.cancel_campaign("spring", reason="SMS copy typo", channel="sms", until=timedelta(hours=2))
        self.assertEqual(c.field, "campaign/sms/spring")
        self.assertEqual(self.stored(t, "campaign/sms/spring")["until_ms"] - self.stored(t, "campaign/sms/spring")["at_ms"], 2 * 3600 * 1000)
        self.assertIn("@", c.by)  # the default: user@host
        j = t.cancel_job("spring-C1/x", reason="customer asked", until=90)
        self.assertEqual((j.kind, j.id, j.channel, j.field), ("job", "spring-C1/x", None, "job/spring-C1/x"))
        self.assertEqual(j.until - j.at, timedelta(seconds=90))
        end = datetime(2099, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))
        k = t.cancel_job("j2", reason="x", until=end)
        self.assertEqual(self.stored(t, "job/j2")["until_ms"], int(end.timestamp()) * 1000)
        self.assertEqual(k.until, end)

    def test_bad_arguments_are_named_and_nothing_is_written(self) -> None:
        t = fresh(self.r, 1)
        past = datetime.now(timezone.utc) - timedelta(minutes=1)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"reason": ""}, "`reason`"),
            ({"reason": "  "}, "`reason`"),
            ({"reason": "x", "channel": "SMS"}, "`channel`"),
            ({"reason": "x", "channel": "sms/x"}, "`channel`"),
            ({"reason": "x", "channel": "best"}, "`channel`"),
            ({"reason": "x", "until": past}, "`until`"),
            ({"reason": "x", "until": -5}, "`until`"),
            ({"reason": "x", "until": datetime(2099, 1, 1)}, "naive"),
            ({"reason": "x", "until": float("nan")}, "`until`"),
            ({"reason": "x", "by": ""}, "`by`"),
        ]
        for kwargs, named in cases:
            with self.assertRaises(ValueError, msg=kwargs) as e:
                t.cancel_campaign("spring", **kwargs)
            self.assertIn(named, str(e.exception))
        with self.assertRaises(ValueError) as e:
            t.cancel_campaign("", reason="x")
        self.assertIn("campaign id", str(e.exception))
        with self.assertRaises(ValueError):
            t.cancel_job("", reason="x")
        self.assertEqual(self.r.hlen(f"{t.prefix}:cancels"), 0)

    def test_list_shows_the_active_ones_and_lift_removes_every_cancel_of_an_id(self) -> None:
        t = fresh(self.r, 1)
        key = f"{t.prefix}:cancels"
        a = t.cancel_campaign("spring", reason="wrong coupon", by="crm")
        b = t.cancel_campaign("spring", reason="SMS typo", by="crm", channel="sms")
        j = t.cancel_job("spring", reason="a job of the same name", by="crm")
        other = t.cancel_job("j9", reason="customer asked", by="ops")
        # What the daemons ignore is left out: lapsed, unreadable, other keys, unknown kinds.
        self.r.hset(key, "campaign/*/old", json.dumps({"reason": "x", "by": "y", "at_ms": 1, "until_ms": 2}))
        self.r.hset(key, "campaign/*/broken", "not json")
        self.r.hset(key, "campaign/*/extra", json.dumps({"reason": "x", "by": "y", "at_ms": 1, "until_ms": 2**52, "note": "n"}))
        self.r.hset(key, "campaign/Bad!/x", a.to_json())
        self.r.hset(key, "segment/x", a.to_json())
        listed = t.cancels()
        self.assertEqual({c.field for c in listed}, {a.field, b.field, j.field, other.field})
        self.assertEqual(next(c for c in listed if c.field == b.field), b)  # what was written is what is read
        self.assertTrue(all(isinstance(c, Cancel) for c in listed))
        self.assertEqual(t.lift("spring"), 3)  # the campaign's on every channel and on sms, and the job's
        self.assertEqual([c.field for c in t.cancels()], [other.field])
        self.assertEqual(t.lift("spring"), 0)
        self.assertEqual(t.lift("old"), 1)  # a lapsed one is removed too
        self.assertIn("cancelled", tayori.TERMINAL_TYPES)
        self.assertTrue(self.r.hexists(key, "job/j9"))


if __name__ == "__main__":
    unittest.main()
