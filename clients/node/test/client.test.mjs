// The client against a real redis-server (TAYORI_TEST_REDIS_URL, set by the Rust
// test tests/clients.rs). Run: node --test test/client.test.mjs (after the build).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";

import { LayoutError, PIPELINE_CHUNK, ReplicationError, ResultsConsumer, TERMINAL_TYPES, Tayori, cancelField, cancelJson, partitionOf } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const url = process.env.TAYORI_TEST_REDIS_URL;
if (!url) throw new Error("TAYORI_TEST_REDIS_URL is not set (tests/clients.rs sets it to its redis-server)");
let r;
before(() => { r = new Redis(url); });
after(() => r.quit());

/** A Tayori on a prefix of its own, with the layout marker a daemon would write. */
async function fresh(partitions) {
  const prefix = `u${randomBytes(4).toString("hex")}`;
  await r.hset(`${prefix}:schema`, "version", "2", "partitions", String(partitions));
  return Tayori.connect(r, { prefix, partitions });
}
const addEvent = (t, k, event) => r.xadd(`${t.prefix}:{${k}}:results`, "*", "event", JSON.stringify(event));
async function pending(t, group) {
  let n = 0;
  for (const s of t.resultsStreams()) n += Number((await r.xpending(s, group))[0]);
  return n;
}
const quiet = () => {};

test("job types match the schema", () => {
  // Throws (exit 1) when docs/job.schema.json changed and src/job-types.ts was not regenerated.
  execFileSync(process.execPath, [join(here, "..", "scripts", "gen-job-types.mjs"), "--check"], { stdio: "pipe" });
});

test("the documented partition function", () => {
  // The table of tests/partitions.rs (Python's zlib.crc32, mod 4).
  const expected = { "C-a1": 0, "C-a2": 2, "C-a3": 0, "C-a4": 3, "C-a5": 1, "C-a6": 3, "C-a7": 1, "C-a8": 0 };
  for (const [customer, k] of Object.entries(expected)) assert.equal(partitionOf({ id: "x", customer_id: customer }, 4), k);
  assert.equal(partitionOf({ id: "C-a2" }, 4), 2);
  assert.equal(partitionOf({ id: "C-a2", customer_id: null }, 4), 2);
  // UTF-8, unsigned: Python's zlib.crc32("山田 太郎".encode()) = 3420819607, mod 12 = 7.
  assert.equal(partitionOf({ id: "山田 太郎" }, 12), 7);
});

describe("enqueue", () => {
  test("jobs land in their partitions, ids in order", async () => {
    const t = await fresh(4);
    const jobs = Array.from({ length: 8 }, (_, i) => ({ id: `j${i + 1}`, customer_id: `C-a${i + 1}`, channel: "email" }));
    const ids = await t.enqueueMany(jobs);
    assert.equal(ids.length, 8);
    for (const [i, job] of jobs.entries()) {
      const got = await r.xrange(`${t.prefix}:{${partitionOf(job, 4)}}:jobs:email`, ids[i], ids[i]);
      assert.equal(JSON.parse(got[0][1][1]).id, job.id);
    }
  });

  test("more jobs than one pipeline", async () => {
    const t = await fresh(1);
    const n = PIPELINE_CHUNK + 7;
    const ids = await t.enqueueMany(Array.from({ length: n }, (_, i) => ({ id: `m${i}`, channel: "sms" })));
    assert.equal(new Set(ids).size, n);
    assert.equal(await r.xlen(`${t.prefix}:{0}:jobs:sms`), n);
  });

  test("Dates become RFC 3339; times without an offset and bad jobs are refused before anything is written", async () => {
    const t = await fresh(1);
    await t.enqueue({ id: "d1", channel: "email", send_at: new Date("2026-11-23T09:00:00+09:00"), expires_at: "2026-11-24T00:00:00+09:00" });
    const job = JSON.parse((await r.xrange(`${t.prefix}:{0}:jobs:email`, "-", "+"))[0][1][1]);
    assert.equal(job.send_at, "2026-11-23T00:00:00.000Z");
    assert.equal(job.expires_at, "2026-11-24T00:00:00+09:00");
    const good = { id: "ok", channel: "email" };
    for (const [bad, field] of [
      [{ id: "n1", channel: "email", send_at: "2026-11-23T09:00:00" }, "send_at"],
      [{ id: "n2", channel: "email", expires_at: new Date("nonsense") }, "expires_at"],
      [{ id: "n3", channel: "email", send_at: { best_between: ["2026-11-23 09:00", "2026-11-24T09:00:00Z"] } }, "best_between"],
      [{ channel: "email" }, "`id`"],
      [{ id: "n4" }, "`channel`"],
    ]) {
      await assert.rejects(t.enqueueMany([good, bad]), (e) => e instanceof TypeError && e.message.includes(field));
    }
    assert.equal(await r.xlen(`${t.prefix}:{0}:jobs:email`), 1);
  });

  test("a wrong partition count or no layout is refused", async () => {
    const t = await fresh(4);
    await assert.rejects(Tayori.connect(r, { prefix: t.prefix, partitions: 2 }), (e) => e instanceof LayoutError && e.message.includes("redis.partitions = 4"));
    assert.equal((await Tayori.connect(r, { prefix: t.prefix })).partitions, 4);
    await assert.rejects(Tayori.connect(r, { prefix: "no-such-prefix" }), /no-such-prefix:schema/);
    await r.hset(`${t.prefix}:schema`, "version", "1");
    await assert.rejects(Tayori.connect(r, { prefix: t.prefix }), LayoutError);
  });

  test("WAIT without replicas says so", async () => {
    const t = await fresh(1);
    await assert.rejects(t.enqueueMany([{ id: "w1", channel: "email" }], { waitReplicas: 1, waitTimeoutMs: 10 }),
      (e) => e instanceof ReplicationError && e.acked === 0 && e.entryIds.length === 1);
    assert.equal(await r.xlen(`${t.prefix}:{0}:jobs:email`), 1);
  });
});

describe("consumer", () => {
  test("repeated event ids are handled once and all acknowledged", async () => {
    const t = await fresh(2);
    const ev = { type: "sent", event_id: "j1/email/1/sent", job_id: "j1" };
    await addEvent(t, 0, ev);
    await addEvent(t, 1, ev);
    await addEvent(t, 1, { type: "sent", event_id: "j2/email/1/sent", job_id: "j2" });
    const seen = [];
    const c = new ResultsConsumer(t, "crm", "c1", { blockMs: 10 });
    await c.createGroups();
    while ((await c.poll((e) => { seen.push(e.event_id); })) > 0);
    assert.deepEqual(seen.sort(), ["j1/email/1/sent", "j2/email/1/sent"]);
    assert.deepEqual([c.stats.handled, c.stats.repeats], [2, 1]);
    assert.equal(await pending(t, "crm"), 0);
  });

  test("a throwing handler leaves the entry pending until it succeeds", async () => {
    const t = await fresh(1);
    await addEvent(t, 0, { type: "sent", event_id: "f1", job_id: "f1" });
    const calls = [];
    const flaky = async (e) => { calls.push(e.event_id); if (calls.length === 1) throw new Error("the CRM's database is away"); };
    const c = new ResultsConsumer(t, "crm", "c1", { claimIdleMs: 0, log: quiet });
    await c.createGroups();
    assert.equal(await c.poll(flaky), 1);
    assert.equal(await pending(t, "crm"), 1);
    assert.equal(await c.claimStale(flaky), 1);
    assert.deepEqual(calls, ["f1", "f1"]);
    assert.equal(await pending(t, "crm"), 0);
  });

  test("own pending entries first, then others' idle ones", async () => {
    const t = await fresh(2);
    for (let i = 0; i < 6; i++) await addEvent(t, i % 2, { type: "sent", event_id: `e${i}`, job_id: `e${i}` });
    await new ResultsConsumer(t, "crm", "a").createGroups();
    const streams = t.resultsStreams();
    await r.xreadgroup("GROUP", "crm", "a", "COUNT", 2, "STREAMS", ...streams, ...streams.map(() => ">"));
    await r.xreadgroup("GROUP", "crm", "b", "COUNT", 1, "STREAMS", ...streams, ...streams.map(() => ">"));
    assert.equal(await pending(t, "crm"), 6);
    const got = [];
    const h = (e) => { got.push(e.event_id); };
    const a = new ResultsConsumer(t, "crm", "a", { claimIdleMs: 3_600_000 });
    assert.equal(await a.recoverOwn(h), 4);
    assert.equal(await a.claimStale(h), 0);
    assert.equal(await pending(t, "crm"), 2);
    a.claimIdleMs = 0;
    assert.equal(await a.claimStale(h), 2);
    assert.deepEqual(got.sort(), ["e0", "e1", "e2", "e3", "e4", "e5"]);
    assert.equal(await pending(t, "crm"), 0);
  });

  test("entries that are not events are acknowledged, not handled", async () => {
    const t = await fresh(1);
    await r.xadd(`${t.prefix}:{0}:results`, "*", "event", "not json");
    await r.xadd(`${t.prefix}:{0}:results`, "*", "other", "x");
    const logged = [];
    const c = new ResultsConsumer(t, "crm", "c1", { log: (m) => logged.push(m), blockMs: 10 });
    await c.createGroups();
    assert.equal(await c.poll(() => assert.fail("handled")), 2);
    assert.equal(c.stats.malformed, 2);
    assert.equal(logged.length, 2);
    assert.equal(await pending(t, "crm"), 0);
  });
});

describe("cancels", () => {
  const stored = async (t, field) => {
    const raw = await r.hget(`${t.prefix}:cancels`, field);
    assert.ok(raw !== null, field);
    return JSON.parse(raw);
  };

  test("the JSON written is exactly the four keys the daemon reads", async () => {
    const t = await fresh(1);
    const c = await t.cancelCampaign("spring/26 セール", { reason: "wrong coupon", by: "crm" });
    assert.deepEqual([c.kind, c.id, c.channel, cancelField(c)], ["campaign", "spring/26 セール", null, "campaign/*/spring/26 セール"]);
    const value = await stored(t, "campaign/*/spring/26 セール");
    // The daemon reads it with unknown keys denied: any other key would make it ignored.
    assert.deepEqual(Object.keys(value).sort(), ["at_ms", "by", "reason", "until_ms"]);
    assert.deepEqual([value.reason, value.by], ["wrong coupon", "crm"]);
    assert.ok(Number.isInteger(value.at_ms) && Number.isInteger(value.until_ms));
    assert.equal(value.until_ms - value.at_ms, 24 * 3600 * 1000); // the default: 24 h
    assert.deepEqual([value.at_ms, value.until_ms], [c.at.getTime(), c.until.getTime()]);
    assert.equal(cancelJson(c), await r.hget(`${t.prefix}:cancels`, cancelField(c)));
  });

  test("one channel, a job, and the forms of until", async () => {
    const t = await fresh(1);
    const c = await t.cancelCampaign("spring", { reason: "SMS copy typo", channel: "sms", until: 7200 });
    assert.equal(cancelField(c), "campaign/sms/spring");
    const v = await stored(t, "campaign/sms/spring");
    assert.equal(v.until_ms - v.at_ms, 7200 * 1000);
    assert.match(c.by, /@/); // the default: user@host
    const j = await t.cancelJob("spring-C1/x", { reason: "customer asked", until: 90 });
    assert.deepEqual([j.kind, j.id, j.channel, cancelField(j)], ["job", "spring-C1/x", null, "job/spring-C1/x"]);
    const end = new Date("2099-03-01T09:00:00+09:00");
    const k = await t.cancelJob("j2", { reason: "x", until: end });
    assert.equal((await stored(t, "job/j2")).until_ms, end.getTime());
    assert.equal(k.until.getTime(), end.getTime());
  });

  test("bad arguments are named and nothing is written", async () => {
    const t = await fresh(1);
    const past = new Date(Date.now() - 60_000);
    for (const [opts, named] of [
      [{ reason: "" }, "`reason`"],
      [{ reason: "  " }, "`reason`"],
      [{}, "`reason`"],
      [{ reason: "x", channel: "SMS" }, "`channel`"],
      [{ reason: "x", channel: "sms/x" }, "`channel`"],
      [{ reason: "x", channel: "best" }, "`channel`"],
      [{ reason: "x", until: past }, "`until`"],
      [{ reason: "x", until: -5 }, "`until`"],
      [{ reason: "x", until: NaN }, "`until`"],
      [{ reason: "x", until: new Date("nonsense") }, "`until`"],
      [{ reason: "x", until: "48h" }, "`until`"],
      [{ reason: "x", by: "" }, "`by`"],
    ]) {
      await assert.rejects(t.cancelCampaign("spring", opts), (e) => e instanceof TypeError && e.message.includes(named), JSON.stringify(opts));
    }
    await assert.rejects(t.cancelCampaign("", { reason: "x" }), /campaign id/);
    await assert.rejects(t.cancelJob("", { reason: "x" }), /job id/);
    await assert.rejects(t.cancelJob("j1", { reason: "x", channel: "sms" }), /`channel`/);
    assert.equal(await r.hlen(`${t.prefix}:cancels`), 0);
  });

  test("list shows the active ones; lift removes every cancel of an id", async () => {
    const t = await fresh(1);
    const key = `${t.prefix}:cancels`;
    const a = await t.cancelCampaign("spring", { reason: "wrong coupon", by: "crm" });
    const b = await t.cancelCampaign("spring", { reason: "SMS typo", by: "crm", channel: "sms" });
    const j = await t.cancelJob("spring", { reason: "a job of the same name", by: "crm" });
    const other = await t.cancelJob("j9", { reason: "customer asked", by: "ops" });
    // What the daemons ignore is left out: lapsed, unreadable, other keys, unknown kinds.
    await r.hset(key, "campaign/*/old", JSON.stringify({ reason: "x", by: "y", at_ms: 1, until_ms: 2 }));
    await r.hset(key, "campaign/*/broken", "not json");
    await r.hset(key, "campaign/*/extra", JSON.stringify({ reason: "x", by: "y", at_ms: 1, until_ms: 2 ** 52, note: "n" }));
    await r.hset(key, "campaign/Bad!/x", cancelJson(a));
    await r.hset(key, "segment/x", cancelJson(a));
    const listed = await t.cancels();
    assert.deepEqual(new Set(listed.map(cancelField)), new Set([a, b, j, other].map(cancelField)));
    assert.deepEqual(listed.find((c) => cancelField(c) === cancelField(b)), b); // what was written is what is read
    assert.equal(await t.lift("spring"), 3); // the campaign's on every channel and on sms, and the job's
    assert.deepEqual((await t.cancels()).map(cancelField), [cancelField(other)]);
    assert.equal(await t.lift("spring"), 0);
    assert.equal(await t.lift("old"), 1); // a lapsed one is removed too
    assert.equal(await r.hexists(key, "job/j9"), 1);
  });

  test("cancelled ends a job", () => {
    assert.ok(TERMINAL_TYPES.has("cancelled"));
  });
});
