// The client end to end against a running Tayori daemon (started by tests/clients.rs):
// enqueue N jobs with enqueueMany, read their events with ResultsConsumer in a child
// process, SIGKILL it mid-stream twice, and check every event was handled exactly
// once and every job has exactly one terminal outcome. Same plan as
// clients/python/tests/acceptance.py:
//
//   node test/acceptance.mjs drive --url redis://… --prefix t --partitions 4 --jobs 2000 --dir /tmp/x
//   node test/acceptance.mjs cancel --url redis://… --prefix t --partitions 4 --jobs 30 --tag node
//
// The consumer child stops inside its handler at a given event (before recording
// it), so each kill lands with entries read and unacknowledged, with no timing
// involved. The handler records each event as one appended line (a write survives
// SIGKILL); a repeat would be a second line.
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import assert from "node:assert/strict";
import { Cluster, Redis } from "ioredis";

import { ResultsConsumer, TERMINAL_TYPES, Tayori, cancelField } from "../dist/index.js";

const GROUP = "crm";
const CHANNELS = ["email", "line", "sms"];

function makeJobs(n) {
  const past = new Date(Date.now() - 3_600_000);
  const jobs = [];
  const expect = new Map();
  for (let i = 0; i < n; i++) {
    const job = {
      id: `acc-${i}`, campaign: "acceptance", customer_id: `C${i}`, channel: CHANNELS[i % CHANNELS.length],
      to: { name: "山田 太郎", email: "taro@example.com", line_user_id: "U4af4980629a1b2c3d4e5f60718293a4b", phone: "090-1234-5678" },
      template: "spring_sale", vars: { points: i, items: [{ name: "化粧水", url: "https://shop.example.com/p/1" }] },
    };
    expect.set(job.id, "sent");
    if (i % 100 === 1) { job.expires_at = past; expect.set(job.id, "expired"); }
    else if (i % 1000 === 2) { job.to = { name: "no address" }; expect.set(job.id, "failed"); }
    jobs.push(job);
  }
  return { jobs, expect };
}

/** `--url` is a Redis, or with `--cluster` a seed node of a Redis Cluster. */
function connect(a) {
  if (!a.cluster) return new Redis(a.url);
  const u = new URL(a.url);
  return new Cluster([{ host: u.hostname, port: Number(u.port) }]);
}

const lineCount = (path) => (existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean).length : 0);

async function consume(a) {
  const r = connect(a);
  const t = await Tayori.connect(r, { prefix: a.prefix, partitions: Number(a.partitions) });
  const c = new ResultsConsumer(t, GROUP, a.name, { claimIdleMs: Number(a["claim-idle-ms"]), blockMs: 100 });
  let recorded = lineCount(a.log);
  const fd = openSync(a.log, "a");
  const stop = new AbortController();
  const blockAt = Number(a["block-at"]);
  const expect = Number(a.expect);
  const handle = async (event) => {
    if (recorded === blockAt) {
      writeFileSync(a.marker, String(process.pid));
      await new Promise(() => {}); // wait here for the SIGKILL: this event stays read and unacknowledged
    }
    writeSync(fd, JSON.stringify({ event_id: event.event_id, job_id: event.job_id, type: event.type, by: a.name }) + "\n");
    recorded++;
    if (recorded >= expect) stop.abort();
  };
  await c.createGroups();
  const recovered = await c.recoverOwn(handle);
  writeFileSync(`${a.log}.${a.name}.recovered`, String(recovered));
  if (recorded < expect) await c.run(handle, stop.signal);
  closeSync(fd);
  console.log(JSON.stringify(c.stats));
  await r.quit();
}

async function pendingOf(r, t, consumer) {
  let total = 0;
  for (const s of t.resultsStreams()) {
    const [, , , consumers] = await r.xpending(s, GROUP);
    for (const [name, n] of consumers ?? []) if (name === consumer) total += Number(n);
  }
  return total;
}

function check(ok, message) {
  if (!ok) throw new Error(message);
}

async function waitFor(path, child, what) {
  const deadline = Date.now() + 120_000;
  while (!existsSync(path)) {
    if (child.exitCode !== null) throw new Error(`the consumer exited (${child.exitCode}) before ${what}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

const killed = (child) => new Promise((res) => { child.once("exit", res); child.kill("SIGKILL"); });

async function drive(a) {
  const r = connect(a);
  const t = await Tayori.connect(r, { prefix: a.prefix, partitions: Number(a.partitions) });
  mkdirSync(a.dir, { recursive: true });
  const log = join(a.dir, "handled.log");
  const { jobs, expect } = makeJobs(Number(a.jobs));

  const started = Date.now();
  const ids = await t.enqueueMany(jobs);
  const enqueueS = (Date.now() - started) / 1000;
  // Entry ids are per stream: (stream, id) identifies an entry.
  check(new Set(jobs.map((j, i) => `${t.streamOf(j)} ${ids[i]}`)).size === jobs.length, "one entry per job");
  check(new Set(jobs.map((j) => t.streamOf(j).split("}")[0])).size === t.partitions, "jobs in every partition");

  const child = (name, blockAt, claimIdleMs) => {
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), "consume", "--url", a.url, "--prefix", a.prefix,
      "--partitions", a.partitions, "--name", name, "--log", log, "--expect", String(jobs.length),
      `--block-at=${blockAt}`, "--marker", join(a.dir, `blocked.${name}.${blockAt}`),
      "--claim-idle-ms", String(claimIdleMs), ...(a.cluster ? ["--cluster"] : [])], { stdio: ["ignore", "pipe", "inherit"] });
    p.out = "";
    p.stdout.on("data", (d) => { p.out += d; });
    children.push(p);
    return p;
  };
  // A failed check must not leave a consumer blocked in its handler: it holds
  // the caller's stderr open, and the caller would wait for ever.
  const children = [];
  process.on("exit", () => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL"); });

  // Run 1: crm-1 handles a third, then is killed inside its handler.
  const firstStop = Math.floor(jobs.length / 3);
  const c1 = child("crm-1", firstStop, 3_600_000);
  await waitFor(join(a.dir, `blocked.crm-1.${firstStop}`), c1, "the first stop");
  await killed(c1);
  const pending1 = await pendingOf(r, t, "crm-1");
  check(pending1 > 0, "the kill left crm-1 with read, unacknowledged entries");

  // Run 2: crm-1 again (the same name): its own pending entries first. Its stop
  // lies past them (a fast daemon lets one poll read hundreds), so it stops in
  // the new entries it reads, after writing what it recovered; the file of run 1
  // is removed so a stale count can never be read.
  const handled1 = readFileSync(log, "utf8").split("\n").filter((l) => l).length;
  const secondStop = Math.max(Math.floor((2 * jobs.length) / 3), handled1 + pending1 + 1);
  check(secondStop < jobs.length, `crm-1 held ${pending1} pending entries: no room for a second stop`);
  rmSync(`${log}.crm-1.recovered`, { force: true });
  const c2 = child("crm-1", secondStop, 3_600_000);
  await waitFor(join(a.dir, `blocked.crm-1.${secondStop}`), c2, "the second stop");
  const recovered = Number(readFileSync(`${log}.crm-1.recovered`, "utf8"));
  check(recovered === pending1, `crm-1 recovered ${recovered} of its ${pending1} pending entries`);
  await killed(c2);
  const pending2 = await pendingOf(r, t, "crm-1");
  check(pending2 > 0, "the second kill left crm-1 with pending entries");

  // Run 3: crm-1 never comes back; crm-2 claims its entries (idle > 0 ms) and finishes.
  const c3 = child("crm-2", -1, 0);
  const code = await new Promise((res) => c3.once("exit", res));
  check(code === 0, `crm-2 exited ${code}`);
  const stats = JSON.parse(c3.out.trim().split("\n").pop());
  check(stats.claimed === pending2, `crm-2 claimed ${stats.claimed} of crm-1's ${pending2} pending entries`);
  check(stats.failed === 0 && stats.malformed === 0, JSON.stringify(stats));
  const totalS = (Date.now() - started) / 1000;

  const lines = readFileSync(log, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const counts = new Map();
  for (const l of lines) counts.set(l.event_id, (counts.get(l.event_id) ?? 0) + 1);
  const twice = [...counts].filter(([, n]) => n > 1).map(([e]) => e);
  check(twice.length === 0, `${twice.length} events handled more than once, e.g. ${twice.slice(0, 5)}`);
  const inStreams = new Set();
  for (const s of t.resultsStreams()) {
    for (const [, fields] of await r.xrange(s, "-", "+")) inStreams.add(JSON.parse(fields[fields.indexOf("event") + 1]).event_id);
  }
  const missing = [...inStreams].filter((e) => !counts.has(e));
  check(missing.length === 0, `${missing.length} events never handled, e.g. ${missing.slice(0, 5)}`);
  check([...counts.keys()].every((e) => inStreams.has(e)), "handled events that are not in the streams");
  const terminal = new Map();
  for (const l of lines) if (TERMINAL_TYPES.has(l.type)) terminal.set(l.job_id, [...(terminal.get(l.job_id) ?? []), l.type]);
  const wrong = [...expect].filter(([j, want]) => JSON.stringify(terminal.get(j)) !== JSON.stringify([want]));
  check(wrong.length === 0, `${wrong.length} jobs without exactly their one terminal outcome, e.g. ${JSON.stringify(wrong.slice(0, 5))}`);
  for (const s of t.resultsStreams()) {
    check(Number((await r.xpending(s, GROUP))[0]) === 0, `${s}: entries left pending`);
    const groups = await r.xinfo("GROUPS", s);
    const g = groups.map((row) => Object.fromEntries(row.reduce((acc, v, i) => (i % 2 ? acc : [...acc, [v, row[i + 1]]]), [])))
      .find((row) => row.name === GROUP);
    check(g && Number(g.lag) === 0, `${s}: ${g?.lag} entries never read`);
  }

  const tally = (key) => Object.fromEntries([...lines.reduce((m, l) => m.set(l[key], (m.get(l[key]) ?? 0) + 1), new Map())]);
  console.log(JSON.stringify({
    jobs: jobs.length, events: lines.length, types: tally("type"), handled_by: tally("by"),
    pending_at_kill: [pending1, pending2], recovered, claimed: stats.claimed, enqueue_s: enqueueS, total_s: totalS,
  }));
  await r.quit();
}

/**
 * Job id → due time (ms) over every partition's delayed set (README "Redis keys":
 * `P:{k}:delayed`, members `{"c": channel, "f": [field, value, …]}` with the `job` field).
 */
async function delayedJobs(r, t) {
  const out = new Map();
  for (let k = 0; k < t.partitions; k++) {
    const key = `${t.prefix}:{${k}}:delayed`;
    let cursor = "0";
    do {
      const [next, flat] = await r.zscan(key, cursor, "COUNT", 1000);
      for (let i = 0; i < flat.length; i += 2) {
        const f = JSON.parse(flat[i]).f;
        const j = f.findIndex((v, n) => n % 2 === 0 && v === "job");
        if (j >= 0) out.set(JSON.parse(f[j + 1]).id, Number(flat[i + 1]));
      }
      cursor = next;
    } while (cursor !== "0");
  }
  return out;
}

/** Polls `done()` until true; fails after `timeoutMs` (a bound for a hung daemon, not a measurement). */
async function until(what, done, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

// Jobs scheduled an hour ahead, cancelled through the client: a campaign on every
// channel, another on one channel, one job. Each cancelled job ends with one
// `cancelled` event carrying the reason and `by` given, read with the client's
// consumer; the job on the other channel is still waiting; cancels() lists the
// three; lift removes them. Same plan as acceptance.py's `cancel`.
async function cancel(a) {
  const r = connect(a);
  const t = await Tayori.connect(r, { prefix: a.prefix, partitions: Number(a.partitions) });
  const tag = a.tag;
  const by = `crm-test-${tag}`;
  const campaign = `cancel-${tag}`;
  const oneChannel = `cancel-${tag}-sms`;
  const inAnHour = new Date(Date.now() + 3_600_000);
  const job = (id, channel, campaign) => ({
    id, campaign, customer_id: `C-${id}`, channel, send_at: inAnHour,
    to: { name: "山田 太郎", email: "taro@example.com", line_user_id: "U4af4980629a1b2c3d4e5f60718293a4b", phone: "090-1234-5678" },
    template: "spring_sale", vars: { points: 1, items: [{ name: "化粧水", url: "https://shop.example.com/p/1" }] },
  });
  const n = Number(a.jobs);
  const jobs = Array.from({ length: n }, (_, i) => job(`${campaign}-${i}`, CHANNELS[i % CHANNELS.length], campaign));
  jobs.push(job(`${oneChannel}-sms`, "sms", oneChannel), job(`${oneChannel}-email`, "email", oneChannel));
  jobs.push(job(`${tag}-solo`, "line", `other-${tag}`));
  const kept = `${oneChannel}-email`;
  const ours = new Set(jobs.map((j) => j.id));
  await t.enqueueMany(jobs);
  // The daemon has put every job aside until its send_at: the cancels must reach them there.
  await until("the jobs in the delayed sets", async () => {
    const delayed = await delayedJobs(r, t);
    return [...ours].every((id) => delayed.has(id));
  });

  const started = Date.now();
  const made = [
    await t.cancelCampaign(campaign, { reason: `wrong coupon (${tag})`, by }),
    await t.cancelCampaign(oneChannel, { channel: "sms", reason: `SMS copy typo (${tag})`, by }),
    await t.cancelJob(`${tag}-solo`, { reason: `customer asked (${tag})`, by }),
  ];
  const byField = (cs) => [...cs].sort((x, y) => (cancelField(x) < cancelField(y) ? -1 : 1));
  const listed = (await t.cancels()).filter((c) => c.by === by);
  assert.deepEqual(byField(listed), byField(made));

  const expected = new Map(jobs.slice(0, n).map((j) => [j.id, made[0]]));
  expected.set(`${oneChannel}-sms`, made[1]);
  expected.set(`${tag}-solo`, made[2]);
  const events = new Map();
  const c = new ResultsConsumer(t, `crm-cancel-${tag}`, "c1", { blockMs: 100 });
  await c.createGroups();
  const handle = (e) => {
    if (ours.has(e.job_id)) events.set(e.job_id, [...(events.get(e.job_id) ?? []), e]);
  };
  await until("a cancelled event for every cancelled job", async () => {
    await c.poll(handle);
    return [...expected.keys()].every((id) => events.has(id));
  });
  const seconds = (Date.now() - started) / 1000;
  for (const [id, made] of expected) {
    const evs = events.get(id);
    assert.equal(evs.length, 1, `${id}: one event, got ${JSON.stringify(evs)}`);
    const e = evs[0];
    assert.deepEqual(
      { type: e.type, reason: e.reason, cancelled_by: e.cancelled_by, cancel: e.cancel },
      { type: "cancelled", reason: made.reason, cancelled_by: by, cancel: made.kind }, id);
    assert.equal(new Date(e.cancelled_at).getTime(), made.at.getTime(), `${id}: cancelled_at`);
  }
  // The campaign was cancelled on sms only: its email job still waits for its send_at.
  assert.ok(!events.has(kept), `${kept}: ${JSON.stringify(events.get(kept))}`);
  const due = (await delayedJobs(r, t)).get(kept);
  assert.ok(due !== undefined && due > Date.now(), `${kept} waits in the delayed set until its send_at: due ${due}`);

  let lifted = 0;
  for (const id of [campaign, oneChannel, `${tag}-solo`]) lifted += await t.lift(id);
  assert.equal(lifted, 3);
  assert.deepEqual((await t.cancels()).filter((x) => x.by === by), [], "nothing listed after the lifts");
  console.log(JSON.stringify({ cancelled: expected.size, listed: listed.length, lifted, cancel_to_all_events_s: seconds }));
  await r.quit();
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: Object.fromEntries(["url", "prefix", "partitions", "jobs", "dir", "name", "log", "expect", "block-at", "marker", "claim-idle-ms", "tag"]
    .map((k) => [k, { type: "string" }]).concat([["cluster", { type: "boolean" }]])),
});
const mode = positionals[0];
if (mode === "drive") await drive({ prefix: "tayori", jobs: "2000", ...values });
else if (mode === "consume") await consume(values);
else if (mode === "cancel") await cancel({ prefix: "tayori", jobs: "30", tag: "node", ...values });
else throw new Error("usage: acceptance.mjs drive|consume|cancel --url … --partitions N …");
