// Reading Tayori's events: a consumer group on every partition's results stream,
// recovery of pending entries, dedupe by `event_id`, acknowledge after the handler.

import { hostname } from "node:os";

import type { Tayori } from "./client";

/**
 * Event types that end a job's path (one per job entry). A `bounced` at the relay
 * is one too when no `fallback` event follows it; see the README's "## Events".
 */
export const TERMINAL_TYPES: ReadonlySet<string> = new Set(["sent", "failed", "duplicate", "expired", "suppressed", "cancelled"]);

/** An event (README "## Events"): the common fields; each type adds its own. */
export interface TayoriEvent {
  type: string;
  event_id: string;
  at: string;
  job_id: string | null;
  campaign?: string | null;
  customer_id?: string | null;
  channel: string;
  attempt: number;
  [field: string]: unknown;
}

export type Handler = (event: TayoriEvent) => unknown | Promise<unknown>;

/**
 * The last `capacity` event ids handled: a bounded memory. It covers repeats within
 * one process (an entry claimed back, an event written again by `tayori migrate`);
 * across restarts the handler itself must be idempotent (store events keyed by
 * `event_id`).
 */
export class RecentIds {
  private ids = new Set<string>();
  constructor(readonly capacity = 100_000) {}
  has(id: string): boolean {
    return this.ids.has(id);
  }
  get size(): number {
    return this.ids.size;
  }
  add(id: string): void {
    this.ids.delete(id);
    this.ids.add(id); // a Set keeps insertion order: the first is the oldest
    while (this.ids.size > this.capacity) {
      const oldest = this.ids.values().next().value as string;
      this.ids.delete(oldest);
    }
  }
}

export interface ConsumerStats {
  handled: number; // the handler returned
  repeats: number; // skipped: event_id already handled by this process
  failed: number; // the handler threw: left pending, retried later
  recovered: number; // own pending entries read again at start
  claimed: number; // entries taken over by XAUTOCLAIM
  malformed: number; // entries without a JSON `event` field: logged and acknowledged
}

export interface ConsumerOptions {
  /** Where a new group starts: "0" (default) = every event the stream holds, "$" = new ones. */
  startId?: string;
  /** Take over entries pending longer than this (others' after a crash; own whose handler threw). */
  claimIdleMs?: number;
  count?: number;
  blockMs?: number;
  /** How many recent event ids to remember for dedupe. */
  remember?: number;
  /** Where errors about entries go (default console.error). */
  log?: (message: string, error?: unknown) => void;
}

type Entry = [id: string, fields: string[] | null];

/**
 * One member (`consumer`) of the CRM's consumer group (`group`) on every results
 * stream. The consumer name must be stable across restarts of the same process (a
 * host name, a StatefulSet pod name): a restarted consumer first reads its own
 * pending entries. Entries left pending by others are taken over with XAUTOCLAIM
 * once idle longer than `claimIdleMs`. An entry is acknowledged only after the
 * handler returned (or its promise resolved); a handler that throws leaves it
 * pending, to be retried after `claimIdleMs` (or at the next start).
 */
export class ResultsConsumer {
  readonly consumer: string;
  readonly streams: string[];
  readonly recent: RecentIds;
  readonly stats: ConsumerStats = { handled: 0, repeats: 0, failed: 0, recovered: 0, claimed: 0, malformed: 0 };
  startId: string;
  claimIdleMs: number;
  count: number;
  blockMs: number;
  private log: (message: string, error?: unknown) => void;

  constructor(
    readonly tayori: Tayori,
    readonly group: string,
    consumer?: string,
    opts: ConsumerOptions = {},
  ) {
    this.consumer = consumer ?? hostname();
    this.streams = tayori.resultsStreams();
    this.startId = opts.startId ?? "0";
    this.claimIdleMs = opts.claimIdleMs ?? 60_000;
    this.count = opts.count ?? 100;
    this.blockMs = opts.blockMs ?? 1000;
    this.recent = new RecentIds(opts.remember ?? 100_000);
    this.log = opts.log ?? ((m, e) => console.error(m, e ?? ""));
  }

  /** The group on every results stream (created with the stream when missing). */
  async createGroups(): Promise<void> {
    for (const s of this.streams) {
      try {
        await this.tayori.redis.xgroup("CREATE", s, this.group, this.startId, "MKSTREAM");
      } catch (e) {
        if (!String((e as Error).message).includes("BUSYGROUP")) throw e; // exists: keep its position
      }
    }
  }

  /**
   * Creates the groups, recovers own pending entries, then reads new events and
   * claims stale ones until `signal` aborts.
   */
  async run(handler: Handler, signal?: AbortSignal): Promise<void> {
    await this.createGroups();
    await this.recoverOwn(handler);
    const claimEvery = Math.max(this.claimIdleMs / 2, 100);
    let nextClaim = Date.now();
    while (!signal?.aborted) {
      if (Date.now() >= nextClaim) {
        await this.claimStale(handler);
        nextClaim = Date.now() + claimEvery;
      }
      if ((await this.poll(handler)) === 0 && this.tayori.cluster) {
        await new Promise((r) => setTimeout(r, Math.min(this.blockMs, 500))); // no BLOCK across slots
      }
    }
  }

  /** Handles this consumer's own pending entries (XREADGROUP … 0). */
  async recoverOwn(handler: Handler): Promise<number> {
    let n = 0;
    for (const s of this.streams) {
      let last = "0";
      for (;;) {
        const reply = (await this.tayori.redis.xreadgroup(
          "GROUP", this.group, this.consumer, "COUNT", this.count, "STREAMS", s, last,
        )) as [string, Entry[]][] | null;
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) break;
        for (const [id, fields] of entries) {
          await this.handle(s, id, fields, handler);
          n++;
        }
        last = entries[entries.length - 1][0];
      }
    }
    this.stats.recovered += n;
    return n;
  }

  /** Takes over and handles entries pending longer than `claimIdleMs`. */
  async claimStale(handler: Handler): Promise<number> {
    let n = 0;
    for (const s of this.streams) {
      let cursor = "0-0";
      do {
        const reply = (await this.tayori.redis.xautoclaim(
          s, this.group, this.consumer, this.claimIdleMs, cursor, "COUNT", this.count,
        )) as [string, Entry[], string[]?];
        cursor = reply[0];
        for (const [id, fields] of reply[1]) {
          await this.handle(s, id, fields, handler);
          n++;
        }
      } while (cursor !== "0-0");
    }
    this.stats.claimed += n;
    return n;
  }

  /**
   * Reads and handles new events: one XREADGROUP > on a standalone Redis, blocking
   * up to `blockMs`; one per partition on a cluster.
   */
  async poll(handler: Handler): Promise<number> {
    const redis = this.tayori.redis;
    let replies: [string, Entry[]][] = [];
    if (this.tayori.cluster) {
      for (const s of this.streams) {
        const r = (await redis.xreadgroup("GROUP", this.group, this.consumer, "COUNT", this.count, "STREAMS", s, ">")) as
          | [string, Entry[]][]
          | null;
        replies = replies.concat(r ?? []);
      }
    } else {
      const r = (await redis.xreadgroup(
        "GROUP", this.group, this.consumer, "COUNT", this.count, "BLOCK", this.blockMs,
        "STREAMS", ...this.streams, ...this.streams.map(() => ">"),
      )) as [string, Entry[]][] | null;
      replies = r ?? [];
    }
    let n = 0;
    for (const [s, entries] of replies) {
      for (const [id, fields] of entries) {
        await this.handle(s, id, fields, handler);
        n++;
      }
    }
    return n;
  }

  private async handle(stream: string, id: string, fields: string[] | null, handler: Handler): Promise<void> {
    const redis = this.tayori.redis;
    const at = fields ? fields.findIndex((f, i) => i % 2 === 0 && f === "event") : -1;
    if (at < 0) {
      // Deleted under us (trimmed) or not written by Tayori: nothing to handle.
      if (fields) {
        this.log(`${stream} ${id} has no \`event\` field; acknowledged without handling`);
        this.stats.malformed++;
      }
      await redis.xack(stream, this.group, id);
      return;
    }
    let event: TayoriEvent;
    try {
      event = JSON.parse(fields![at + 1]);
      if (event === null || typeof event !== "object" || Array.isArray(event)) throw new Error("not a JSON object");
    } catch (e) {
      this.log(`${stream} ${id}: \`event\` is not a JSON object; acknowledged without handling`, e);
      this.stats.malformed++;
      await redis.xack(stream, this.group, id);
      return;
    }
    const eventId = typeof event.event_id === "string" ? event.event_id : undefined;
    if (eventId !== undefined && this.recent.has(eventId)) {
      this.stats.repeats++;
      await redis.xack(stream, this.group, id);
      return;
    }
    try {
      await handler(event);
    } catch (e) {
      this.stats.failed++;
      this.log(`the handler threw on ${stream} ${id}; left pending, retried later`, e);
      return;
    }
    this.stats.handled++;
    if (eventId !== undefined) this.recent.add(eventId); // before the XACK: a redelivery after a failed XACK is a repeat
    await redis.xack(stream, this.group, id);
  }
}
