// Tayori's key layout (schema 2) as the CRM sees it: partitions and stream names.
// The same function as Tayori's src/keys.rs: a job's partition is CRC-32 of its
// `customer_id` (its `id` without one) mod `partitions`; every key of partition k
// carries the hash tag `{k}`, so on a Redis Cluster a partition lives in one slot.

/** The layout version this client reads (`{prefix}:schema` field `version`). */
export const SCHEMA_VERSION = "2";
/** Tayori's upper bound for `redis.partitions`. */
export const MAX_PARTITIONS = 1024;

/** Redis holds no Tayori layout, or one other than this client was told to use. */
export class LayoutError extends Error {
  override name = "LayoutError";
}

// CRC-32 (IEEE 802.3, zlib's): here rather than node:zlib's crc32, which older
// Node versions (Debian 12's 18) lack.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 of `data` as an unsigned number (zlib.crc32 in Python). */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** What decides a job's partition: its `customer_id`, or its `id` without one. */
export function partitionKey(job: { id?: unknown; customer_id?: unknown }): string {
  if (typeof job.customer_id === "string" && job.customer_id !== "") return job.customer_id;
  if (typeof job.id !== "string" || job.id === "") {
    throw new TypeError("job field `id`: a non-empty string is required");
  }
  return job.id;
}

/** The job's partition: CRC-32 of `partitionKey(job)` (UTF-8) mod `partitions`. */
export function partitionOf(job: { id?: unknown; customer_id?: unknown }, partitions: number): number {
  return crc32(Buffer.from(partitionKey(job), "utf8")) % partitions;
}

/** `{prefix}:{k}:jobs:{channel}`, e.g. `tayori:{0}:jobs:email`. */
export function jobStream(prefix: string, partition: number, channel: string): string {
  return `${prefix}:{${partition}}:jobs:${channel}`;
}

/** `{prefix}:{k}:results`, e.g. `tayori:{0}:results`. */
export function resultsStream(prefix: string, partition: number): string {
  return `${prefix}:{${partition}}:results`;
}

/** `{prefix}:schema`: the hash where Tayori records `version` and `partitions`. */
export function schemaKey(prefix: string): string {
  return `${prefix}:schema`;
}

/**
 * The partition count to use, from the `{prefix}:schema` hash read from Redis.
 * Refuses a Redis without the marker (Tayori writes it on its first start), one
 * of another layout version, and one whose partition count differs from
 * `partitions` (when given): enqueueing with a wrong N would put jobs where the
 * daemon's partition function does not, and reading with a wrong N would miss events.
 */
export function checkLayout(recorded: Record<string, string>, prefix: string, partitions?: number): number {
  const key = schemaKey(prefix);
  if (Object.keys(recorded).length === 0) {
    throw new LayoutError(
      `Redis has no ${key}: no Tayori daemon has started on it with redis.prefix = ` +
        `"${prefix}"; start \`tayori run\` once first, or check the prefix`,
    );
  }
  if (recorded.version !== SCHEMA_VERSION) {
    throw new LayoutError(
      `${key} says version ${JSON.stringify(recorded.version)}; this client knows layout ` +
        `${SCHEMA_VERSION}: upgrade the client, or migrate Tayori (\`tayori migrate\`)`,
    );
  }
  const n = Number(recorded.partitions);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PARTITIONS) {
    throw new LayoutError(`${key} field \`partitions\` is not a partition count: ${JSON.stringify(recorded.partitions)}`);
  }
  if (partitions !== undefined && partitions !== n) {
    throw new LayoutError(
      `Tayori's Redis is laid out for redis.partitions = ${n} (${key}), but the client was ` +
        `given partitions = ${partitions}: use ${n} (or omit it to read it)`,
    );
  }
  return n;
}
