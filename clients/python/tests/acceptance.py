"""The client end to end against a running Tayori daemon (started by tests/clients.rs):
enqueue N jobs with `enqueue_many`, read their events with `ResultsConsumer` in a
child process, SIGKILL it mid-stream twice, and check every event was handled
exactly once and every job has exactly one terminal outcome.

    python acceptance.py drive --url redis://… --prefix t --partitions 4 --jobs 10000 --dir /tmp/x
    python acceptance.py cancel --url redis://… --prefix t --partitions 4 --jobs 30 --tag py

The consumer child stops inside its handler at a given event (before recording it),
so the kill lands with entries read and not acknowledged every time, with no
timing involved. Its handler records each event by appending one line to a log
(a write survives SIGKILL); a repeat would be a second line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from tayori import TERMINAL_TYPES, Cancel, Job, ResultsConsumer, Tayori

GROUP = "crm"
CHANNELS = ("email", "line", "sms")


def make_jobs(n: int) -> tuple[list[Job], dict[str, str]]:
    """The jobs and the terminal type each must end with: 1 in 100 expired, 1 in 1,000
    failed (no address: the daemon logs each), the rest sent."""
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    jobs: list[Job] = []
    expect: dict[str, str] = {}
    for i in range(n):
        channel = CHANNELS[i % len(CHANNELS)]
        job: Job = {
            "id": f"acc-{i}",
            "campaign": "acceptance",
            "customer_id": f"C{i}",
            "channel": channel,
            "to": {"name": "山田 太郎", "email": "taro@example.com", "line_user_id": "U4af4980629a1b2c3d4e5f60718293a4b", "phone": "090-1234-5678"},
            "template": "spring_sale",
            "vars": {"points": i, "items": [{"name": "化粧水", "url": "https://shop.example.com/p/1"}]},
        }
        expect[job["id"]] = "sent"
        if i % 100 == 1:
            job["expires_at"] = past  # type: ignore[typeddict-item]  # a datetime: the client writes RFC 3339
            expect[job["id"]] = "expired"
        elif i % 1000 == 2:
            job["to"] = {"name": "no address"}
            expect[job["id"]] = "failed"
        jobs.append(job)
    return jobs, expect


def connect(args: argparse.Namespace) -> Any:
    """`--url` is a Redis, or with `--cluster` a seed node of a Redis Cluster."""
    return RedisCluster.from_url(args.url) if args.cluster else redis.Redis.from_url(args.url)


def consume(args: argparse.Namespace) -> int:
    r = connect(args)
    t = Tayori(r, prefix=args.prefix, partitions=args.partitions)
    c = ResultsConsumer(t, GROUP, args.name, claim_idle_ms=args.claim_idle_ms, block_ms=100)
    log = Path(args.log)
    recorded = len(log.read_text().splitlines()) if log.exists() else 0
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    stop = threading.Event()

    def handle(event: dict[str, Any]) -> None:
        nonlocal recorded
        if recorded == args.block_at:
            Path(args.marker).write_text(str(os.getpid()))
            while True:  # wait here for the SIGKILL: this event stays read and unacknowledged
                time.sleep(60)
        line = {"event_id": event["event_id"], "job_id": event["job_id"], "type": event["type"], "by": args.name}
        os.write(fd, (json.dumps(line) + "\n").encode())
        recorded += 1
        if recorded >= args.expect:
            stop.set()

    c.create_groups()
    recovered = c.recover_own(handle)
    Path(f"{args.log}.{args.name}.recovered").write_text(str(recovered))
    if recorded < args.expect:
        c.run(handle, stop)
    print(json.dumps(c.stats.__dict__))
    return 0


def pending_of(r: Any, t: Tayori, consumer: str) -> int:
    total = 0
    for s in t.results_streams():
        for row in r.xpending(s, GROUP).get("consumers", []):
            if row["name"] in (consumer, consumer.encode()):
                total += int(row["pending"])
    return total


def wait_for(path: Path, child: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if child.poll() is not None:
            raise SystemExit(f"the consumer exited ({child.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def drive(args: argparse.Namespace) -> int:
    r = connect(args)
    t = Tayori(r, prefix=args.prefix, partitions=args.partitions)
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "handled.log"
    jobs, expect = make_jobs(args.jobs)

    started = time.monotonic()
    ids = t.enqueue_many(jobs)
    enqueue_s = time.monotonic() - started
    # Entry ids are per stream: (stream, id) identifies an entry.
    assert len(set(zip(map(t.stream_of, jobs), ids))) == len(jobs), "one entry per job"
    per_partition = Counter(int(s.split("{")[1].split("}")[0]) for s in map(t.stream_of, jobs))
    assert len(per_partition) == args.partitions, f"jobs in every partition: {per_partition}"

    children: list[subprocess.Popen[bytes]] = []

    def child(name: str, block_at: int, claim_idle_ms: int) -> subprocess.Popen[bytes]:
        c = subprocess.Popen(
            [sys.executable, __file__, "consume", "--url", args.url, "--prefix", args.prefix,
             "--partitions", str(args.partitions), "--name", name, "--log", str(log),
             "--expect", str(len(jobs)), f"--block-at={block_at}", "--marker", str(work / f"blocked.{name}.{block_at}"),
             "--claim-idle-ms", str(claim_idle_ms), *(["--cluster"] if args.cluster else [])],
            stdout=subprocess.PIPE,
        )
        children.append(c)
        return c

    try:
        return drive_runs(args, r, t, work, log, jobs, expect, started, enqueue_s, child)
    finally:
        # A failed check must not leave a consumer blocked in its handler: it
        # holds the caller's pipes open, and the caller would wait for ever.
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()


def drive_runs(args: argparse.Namespace, r: Any, t: Tayori, work: Path, log: Path,
               jobs: list[Job], expect: dict[str, str], started: float, enqueue_s: float,
               child: Any) -> int:
    # Run 1: crm-1 handles a third, then is killed inside its handler.
    first_stop = len(jobs) // 3
    c1 = child("crm-1", first_stop, 3_600_000)
    wait_for(work / f"blocked.crm-1.{first_stop}", c1, "the first stop")
    os.kill(c1.pid, signal.SIGKILL)
    c1.wait()
    pending_1 = pending_of(r, t, "crm-1")
    assert pending_1 > 0, "the kill left crm-1 with read, unacknowledged entries"

    # Run 2: crm-1 again (the same name): its own pending entries first. Its stop
    # lies past them (a fast daemon lets one poll read hundreds), so it stops in
    # the new entries it reads, after writing what it recovered; the file of run 1
    # is removed so a stale count can never be read.
    handled_1 = len(log.read_text().splitlines())
    second_stop = max(2 * len(jobs) // 3, handled_1 + pending_1 + 1)
    assert second_stop < len(jobs), f"crm-1 held {pending_1} pending entries: no room for a second stop"
    Path(f"{log}.crm-1.recovered").unlink(missing_ok=True)
    c2 = child("crm-1", second_stop, 3_600_000)
    wait_for(work / f"blocked.crm-1.{second_stop}", c2, "the second stop")
    recovered = int((Path(f"{log}.crm-1.recovered")).read_text())
    assert recovered == pending_1, f"crm-1 recovered {recovered} of its {pending_1} pending entries"
    os.kill(c2.pid, signal.SIGKILL)
    c2.wait()
    pending_2 = pending_of(r, t, "crm-1")
    assert pending_2 > 0, "the second kill left crm-1 with pending entries"

    # Run 3: crm-1 never comes back; crm-2 claims its entries (idle > 0 ms) and finishes.
    c3 = child("crm-2", -1, 0)
    out, _ = c3.communicate(timeout=300)
    assert c3.returncode == 0, f"crm-2 exited {c3.returncode}"
    stats = json.loads(out.decode().strip().splitlines()[-1])
    assert stats["claimed"] == pending_2, f"crm-2 claimed {stats['claimed']} of crm-1's {pending_2} pending entries"
    assert stats["failed"] == 0 and stats["malformed"] == 0, stats
    total_s = time.monotonic() - started

    # Every event exactly once; every job exactly one terminal outcome, the expected one.
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    counts = Counter(line["event_id"] for line in lines)
    twice = [e for e, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} events handled more than once, e.g. {twice[:5]}"
    in_streams = {
        json.loads(f[b"event"])["event_id"] for s in t.results_streams() for _, f in r.xrange(s)
    }
    missing = in_streams - set(counts)
    assert not missing, f"{len(missing)} events never handled, e.g. {sorted(missing)[:5]}"
    assert set(counts) <= in_streams
    terminal: dict[str, list[str]] = {}
    for line in lines:
        if line["type"] in TERMINAL_TYPES:
            terminal.setdefault(line["job_id"], []).append(line["type"])
    wrong = {j: terminal.get(j) for j, want in expect.items() if terminal.get(j) != [want]}
    assert not wrong, f"{len(wrong)} jobs without exactly their one terminal outcome, e.g. {list(wrong.items())[:5]}"
    for s in t.results_streams():
        assert r.xpending(s, GROUP)["pending"] == 0, f"{s}: entries left pending"
        group = next(g for g in r.xinfo_groups(s) if g["name"] in (GROUP, GROUP.encode()))
        assert group["lag"] == 0, f"{s}: {group['lag']} entries never read"

    by_run = Counter(line["by"] for line in lines)
    print(json.dumps({
        "jobs": len(jobs), "events": len(lines), "types": Counter(line["type"] for line in lines),
        "handled_by": by_run, "pending_at_kill": [pending_1, pending_2], "recovered": recovered,
        "claimed": stats["claimed"], "enqueue_s": round(enqueue_s, 3), "total_s": round(total_s, 3),
    }))
    return 0


def delayed_jobs(r: Any, t: Tayori) -> dict[str, float]:
    """Job id → due time (ms) over every partition's delayed set (README "Redis keys":
    `P:{k}:delayed`, members `{"c": channel, "f": [field, value, …]}` with the `job` field)."""
    out: dict[str, float] = {}
    for k in range(t.partitions):
        for member, score in r.zscan_iter(f"{t.prefix}:{{{k}}}:delayed"):
            fields = json.loads(member)["f"]
            job = dict(zip(fields[::2], fields[1::2])).get("job")
            if job is not None:
                out[json.loads(job)["id"]] = score
    return out


def until(what: str, done: Any, timeout: float = 90) -> None:
    """Polls `done()` until true; fails after `timeout` s (a bound for a hung daemon, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def cancel(args: argparse.Namespace) -> int:
    """Jobs scheduled an hour ahead, cancelled through the client: a campaign on every
    channel, another on one channel, one job. Each cancelled job ends with one
    `cancelled` event carrying the reason and `by` given, read with the client's
    consumer; the job on the other channel is still waiting; `cancels()` lists the
    three; `lift` removes them."""
    r = connect(args)
    t = Tayori(r, prefix=args.prefix, partitions=args.partitions)
    tag, by = args.tag, f"crm-test-{args.tag}"
    campaign, one_channel = f"cancel-{tag}", f"cancel-{tag}-sms"
    in_an_hour = datetime.now(timezone.utc) + timedelta(hours=1)

    def job(job_id: str, channel: str, campaign: str) -> Job:
        return {
            "id": job_id, "campaign": campaign, "customer_id": f"C-{job_id}", "channel": channel,
            "send_at": in_an_hour,  # type: ignore[typeddict-item]  # a datetime: the client writes RFC 3339
            "to": {"name": "山田 太郎", "email": "taro@example.com", "line_user_id": "U4af4980629a1b2c3d4e5f60718293a4b", "phone": "090-1234-5678"},
            "template": "spring_sale", "vars": {"points": 1, "items": [{"name": "化粧水", "url": "https://shop.example.com/p/1"}]},
        }

    jobs = [job(f"{campaign}-{i}", CHANNELS[i % len(CHANNELS)], campaign) for i in range(args.jobs)]
    jobs += [job(f"{one_channel}-sms", "sms", one_channel), job(f"{one_channel}-email", "email", one_channel)]
    jobs.append(job(f"{tag}-solo", "line", f"other-{tag}"))
    kept = f"{one_channel}-email"
    ours = {j["id"] for j in jobs}
    t.enqueue_many(jobs)
    # The daemon has put every job aside until its send_at: the cancels must reach them there.
    until("the jobs in the delayed sets", lambda: ours <= delayed_jobs(r, t).keys())

    started = time.monotonic()
    made: list[Cancel] = [
        t.cancel_campaign(campaign, reason=f"wrong coupon ({tag})", by=by),
        t.cancel_campaign(one_channel, channel="sms", reason=f"SMS copy typo ({tag})", by=by),
        t.cancel_job(f"{tag}-solo", reason=f"customer asked ({tag})", by=by),
    ]
    listed = [c for c in t.cancels() if c.by == by]
    assert sorted(listed, key=lambda c: c.field) == sorted(made, key=lambda c: c.field), f"listed {listed}, made {made}"

    expected = {j["id"]: made[0] for j in jobs[: args.jobs]}
    expected[f"{one_channel}-sms"] = made[1]
    expected[f"{tag}-solo"] = made[2]
    events: dict[str, list[dict[str, Any]]] = {}
    c = ResultsConsumer(t, f"crm-cancel-{tag}", "c1", block_ms=100)
    c.create_groups()

    def handle(event: dict[str, Any]) -> None:
        if event.get("job_id") in ours:
            events.setdefault(event["job_id"], []).append(event)

    def all_read() -> bool:
        c.poll(handle)
        return expected.keys() <= events.keys()

    until("a cancelled event for every cancelled job", all_read)
    seconds = time.monotonic() - started
    for job_id, by_what in expected.items():
        evs = events[job_id]
        assert len(evs) == 1, f"{job_id}: one event, got {evs}"
        e = evs[0]
        want = {"type": "cancelled", "reason": by_what.reason, "cancelled_by": by, "cancel": by_what.kind}
        assert {k: e.get(k) for k in want} == want, f"{job_id}: {e}"
        assert datetime.fromisoformat(e["cancelled_at"]) == by_what.at, f"{job_id}: cancelled_at {e['cancelled_at']}, made {by_what.at}"
    # The campaign was cancelled on sms only: its email job still waits for its send_at.
    assert kept not in events, f"{kept}: {events.get(kept)}"
    due = delayed_jobs(r, t).get(kept)
    assert due is not None and due > time.time() * 1000, f"{kept} waits in the delayed set until its send_at: due {due}"

    lifted = sum(t.lift(x) for x in (campaign, one_channel, f"{tag}-solo"))
    assert lifted == 3, f"lifted {lifted}"
    assert not [x for x in t.cancels() if x.by == by], "nothing listed after the lifts"
    print(json.dumps({"cancelled": len(expected), "listed": len(listed), "lifted": lifted, "cancel_to_all_events_s": round(seconds, 3)}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["drive", "consume", "cancel"])
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", default="tayori")
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--dir")
    p.add_argument("--name")
    p.add_argument("--log")
    p.add_argument("--expect", type=int)
    p.add_argument("--block-at", type=int, default=-1)
    p.add_argument("--marker")
    p.add_argument("--claim-idle-ms", type=int, default=60_000)
    p.add_argument("--cluster", action="store_true", help="--url is a seed node of a Redis Cluster")
    p.add_argument("--tag", default="py", help="cancel: names this run's campaigns and jobs")
    args = p.parse_args()
    return {"drive": drive, "consume": consume, "cancel": cancel}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
