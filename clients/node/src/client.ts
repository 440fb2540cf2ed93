// Enqueueing jobs: one pipelined XADD per job to its partition's channel stream.

import { Cluster, Redis } from "ioredis";

import {
  type Cancel,
  type CancelOptions,
  type CampaignCancelOptions,
  activeCancels,
  cancelField,
  cancelJson,
  cancelsKey,
  fieldsOf,
  newCancel,
} from "./cancels";
import type { BestTime, Job } from "./job-types";
import { checkLayout, jobStream, partitionOf, resultsStream, schemaKey } from "./layout";

/**
 * Jobs per pipeline round trip: bounds the client's and Redis's buffers while
 * keeping round trips few (10,000 jobs = 10 round trips).
 */
export const PIPELINE_CHUNK = 1000;

/** A job as `enqueueMany` takes it: `send_at`, `expires_at` may be `Date`s. */
export type JobInput = Omit<Job, "send_at" | "expires_at"> & {
  send_at?: string | Date | BestTime | { best_between: (string | Date)[] } | null;
  expires_at?: string | Date | null;
};

/**
 * `WAIT` returned fewer replicas than asked for: the jobs are on the primary
 * (their `entryIds` are here) but a failover now could lose them. Enqueueing the
 * same jobs again is safe: a job id seen twice is sent once.
 */
export class ReplicationError extends Error {
  override name = "ReplicationError";
  constructor(
    readonly wanted: number,
    readonly acked: number,
    readonly entryIds: string[],
  ) {
    super(`WAIT: ${acked} of ${wanted} replicas confirmed the jobs`);
  }
}

export interface EnqueueOptions {
  /** After the XADDs, WAIT for this many replicas (on each master written to). */
  waitReplicas?: number;
  waitTimeoutMs?: number;
}

/** RFC 3339 with an offset: a time without one would be read in some zone the CRM did not mean. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** Tayori's queue on a Redis (ioredis `Redis` or `Cluster`). Make one with `Tayori.connect`. */
export class Tayori {
  readonly cluster: boolean;

  private constructor(
    readonly redis: Redis | Cluster,
    readonly prefix: string,
    readonly partitions: number,
  ) {
    this.cluster = redis instanceof Cluster;
  }

  /**
   * Reads the layout Tayori recorded (`{prefix}:schema`) and refuses one other than
   * `partitions` (when given) with a `LayoutError`.
   */
  static async connect(redis: Redis | Cluster, opts: { prefix?: string; partitions?: number } = {}): Promise<Tayori> {
    const prefix = opts.prefix ?? "tayori";
    const recorded = await redis.hgetall(schemaKey(prefix));
    return new Tayori(redis, prefix, checkLayout(recorded, prefix, opts.partitions));
  }

  /** Every partition's results stream: a reader must read them all. */
  resultsStreams(): string[] {
    return Array.from({ length: this.partitions }, (_, k) => resultsStream(this.prefix, k));
  }

  /** The stream a job goes to: its channel's (for `best`, its first channel's) in its partition. */
  streamOf(job: { id?: unknown; customer_id?: unknown; channel?: unknown; channels?: unknown }): string {
    let channel = job.channel;
    if (typeof channel !== "string" || channel === "") {
      throw new TypeError(`job ${JSON.stringify(job.id)}: field \`channel\`: a non-empty string is required`);
    }
    if (channel === "best") {
      const channels = job.channels;
      if (!Array.isArray(channels) || typeof channels[0] !== "string") {
        throw new TypeError(`job ${JSON.stringify(job.id)}: field \`channels\`: \`best\` needs a list of channels`);
      }
      channel = channels[0];
    }
    return jobStream(this.prefix, partitionOf(job, this.partitions), channel as string);
  }

  /** One job; see `enqueueMany`. */
  async enqueue(job: JobInput, opts: EnqueueOptions = {}): Promise<string> {
    return (await this.enqueueMany([job], opts))[0];
  }

  /**
   * Adds each job to its stream, pipelined; resolves to the entry ids in order.
   * Every job is checked and serialized before anything is written, so a bad job
   * (no `id`, a time without an offset, an invalid `Date`) throws a `TypeError` and
   * nothing is enqueued. On a Redis Cluster each partition gets its own pipelines
   * (one slot each). With `waitReplicas`, WAIT follows on each master written to
   * and `ReplicationError` says when fewer confirmed. A Redis error mid-way leaves
   * the earlier jobs enqueued; enqueueing them all again is safe.
   */
  async enqueueMany(jobs: Iterable<JobInput>, opts: EnqueueOptions = {}): Promise<string[]> {
    const prepared = Array.from(jobs, (job) => [this.streamOf(job), serialize(job)] as const);
    const ids: string[] = new Array(prepared.length).fill("");
    const groups = new Map<string, number[]>();
    prepared.forEach(([stream], i) => {
      // Standalone: one group, any order. Cluster: one group per partition (slot).
      const key = this.cluster ? stream.slice(0, stream.indexOf("}")) : "";
      const g = groups.get(key);
      if (g) g.push(i);
      else groups.set(key, [i]);
    });
    const wanted = opts.waitReplicas ?? 0;
    let acked = Infinity;
    for (const indices of groups.values()) {
      for (let start = 0; start < indices.length; start += PIPELINE_CHUNK) {
        const chunk = indices.slice(start, start + PIPELINE_CHUNK);
        const pipe = this.redis.pipeline();
        for (const i of chunk) pipe.xadd(prepared[i][0], "*", "job", prepared[i][1]);
        const last = start + PIPELINE_CHUNK >= indices.length;
        // On a cluster a pipeline goes to its keys' master: the WAIT there is for that master.
        if (wanted > 0 && last) pipe.wait(wanted, opts.waitTimeoutMs ?? 1000);
        const replies = (await pipe.exec()) ?? [];
        chunk.forEach((i, j) => {
          const [err, id] = replies[j] ?? [new Error("no reply"), null];
          if (err) throw err;
          ids[i] = String(id);
        });
        if (wanted > 0 && last) {
          const [err, n] = replies[chunk.length] ?? [new Error("no reply to WAIT"), 0];
          if (err) throw err;
          acked = Math.min(acked, Number(n));
        }
      }
    }
    if (wanted > 0 && prepared.length > 0 && acked < wanted) throw new ReplicationError(wanted, acked, ids);
    return ids;
  }

  /**
   * Stops every job of `campaign` (on `opts.channel` only, when given) wherever it
   * waits, on every daemon within seconds; jobs of it enqueued until `opts.until`
   * are cancelled too. Each ends with one `cancelled` event carrying `reason` and
   * `by` (`cancelled_by`; default user@host). `until`: a `Date` or seconds from
   * now; default 24 h. Resolves to what was written; a cancel of the same target is
   * replaced. Throws a `TypeError` naming a bad argument (nothing is written).
   */
  async cancelCampaign(campaign: string, opts: CampaignCancelOptions): Promise<Cancel> {
    return this.record(newCancel("campaign", campaign, opts));
  }

  /** Stops one job (on every channel it goes through); see `cancelCampaign`. */
  async cancelJob(jobId: string, opts: CancelOptions): Promise<Cancel> {
    return this.record(newCancel("job", jobId, opts));
  }

  /** The active cancels, oldest first (lapsed and unreadable fields left out, as the daemons leave them out). */
  async cancels(): Promise<Cancel[]> {
    return activeCancels(await this.redis.hgetall(cancelsKey(this.prefix)));
  }

  /**
   * Removes every cancel of the campaign or job `id` (every channel's); resolves to
   * how many were removed. Jobs already cancelled stay cancelled; jobs enqueued from
   * now on are sent.
   */
  async lift(id: string): Promise<number> {
    const key = cancelsKey(this.prefix);
    const fields = fieldsOf(await this.redis.hgetall(key), id);
    return fields.length > 0 ? this.redis.hdel(key, ...fields) : 0;
  }

  private async record(cancel: Cancel): Promise<Cancel> {
    await this.redis.hset(cancelsKey(this.prefix), cancelField(cancel), cancelJson(cancel));
    return cancel;
  }
}

/** A time for a job field: a `Date` becomes RFC 3339 (UTC); a string must carry an offset. */
export function rfc3339(value: unknown, field: string): unknown {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new TypeError(`job field \`${field}\`: an invalid Date`);
    return value.toISOString();
  }
  if (typeof value === "string" && !RFC3339.test(value)) {
    throw new TypeError(
      `job field \`${field}\`: ${JSON.stringify(value)} is not RFC 3339 with an offset (e.g. 2026-11-23T09:00:00+09:00)`,
    );
  }
  return value;
}

function serialize(input: JobInput): string {
  if (typeof input.id !== "string" || input.id === "") {
    throw new TypeError("job field `id`: a non-empty string is required");
  }
  const job: Record<string, unknown> = { ...input };
  for (const field of ["send_at", "expires_at"]) {
    if (job[field] != null && typeof job[field] !== "object") job[field] = rfc3339(job[field], field);
    if (job[field] instanceof Date) job[field] = rfc3339(job[field], field);
  }
  const sendAt = job.send_at as { best_between?: unknown } | null | undefined;
  if (sendAt && typeof sendAt === "object" && Array.isArray(sendAt.best_between)) {
    job.send_at = { ...sendAt, best_between: sendAt.best_between.map((v) => rfc3339(v, "send_at.best_between")) };
  }
  return JSON.stringify(job);
}
