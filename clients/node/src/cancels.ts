// Cancels: stop a campaign (on every channel or one) or a job from the CRM, the
// same way `tayori cancel` does.
//
// A cancel is a field of the hash `{prefix}:cancels` (a plain key, no hash tag):
// the field names what it stops, `campaign/<channel or *>/<campaign id>` or
// `job/<job id>`; the value is JSON with exactly the keys `reason`, `by`, `at_ms`,
// `until_ms` (the daemon refuses any other key, so nothing else is ever written).
// Every daemon reads the hash with each dedupe claim and once a second: writing
// the field is the whole cancel, deleting it lifts it, and one past `until_ms` is
// ignored (and pruned by the daemons).

import { hostname, userInfo } from "node:os";

/**
 * How long a cancel lasts when `until` is not given (as `tayori cancel`): a
 * campaign's enqueueing rarely runs longer, and a forgotten cancel must not stop
 * next week's campaign of the same name.
 */
export const DEFAULT_FOR_MS = 24 * 3600 * 1000;

/** A channel's wire id (Tayori's `ChannelId`): 1 to 15 of a-z, 0-9 and _. */
const CHANNEL_NAME = /^[a-z0-9_]{1,15}$/;

/** The keys of a cancel's JSON, exactly: the daemon reads it with unknown keys denied. */
export const CANCEL_KEYS = ["reason", "by", "at_ms", "until_ms"] as const;

const SEP = "/";
const EVERY_CHANNEL = "*";

/** One cancel as recorded: what it stops, why, who, since when and until when. */
export interface Cancel {
  kind: "campaign" | "job";
  /** The campaign id or the job id. */
  id: string;
  /** For a campaign cancel on one channel, that channel; null on every channel (and for a job). */
  channel: string | null;
  reason: string;
  by: string;
  at: Date;
  until: Date;
}

export interface CancelOptions {
  /** Why: it goes into every `cancelled` event (`reason`). Required. */
  reason: string;
  /** Who (`cancelled_by` in the events); default `user@host`. */
  by?: string;
  /** When it lapses: a `Date`, or seconds from now; default 24 h from now. */
  until?: Date | number;
}

export interface CampaignCancelOptions extends CancelOptions {
  /** Only the campaign's jobs on this channel; default every channel. */
  channel?: string;
}

/** `{prefix}:cancels`: the hash of cancels every daemon reads. */
export function cancelsKey(prefix: string): string {
  return `${prefix}:cancels`;
}

/** The field of `{prefix}:cancels` a cancel is stored under. */
export function cancelField(c: Pick<Cancel, "kind" | "id" | "channel">): string {
  return c.kind === "job" ? `job${SEP}${c.id}` : `campaign${SEP}${c.channel ?? EVERY_CHANNEL}${SEP}${c.id}`;
}

/** The value stored: exactly the four keys the daemon reads. */
export function cancelJson(c: Pick<Cancel, "reason" | "by" | "at" | "until">): string {
  return JSON.stringify({ reason: c.reason, by: c.by, at_ms: c.at.getTime(), until_ms: c.until.getTime() });
}

/**
 * A checked cancel, made at `now`. Throws a `TypeError` naming the argument: an
 * empty id or reason, a channel that cannot be one, an `until` that is not in the future.
 */
export function newCancel(
  kind: "campaign" | "job",
  id: string,
  opts: CampaignCancelOptions,
  now: Date = new Date(),
): Cancel {
  if (typeof id !== "string" || id === "") throw new TypeError(`the ${kind} id: a non-empty string is required`);
  if (typeof opts.reason !== "string" || opts.reason.trim() === "") {
    throw new TypeError("`reason` is required: say why (it goes into every `cancelled` event)");
  }
  const channel = opts.channel ?? null;
  if (channel !== null) {
    if (kind !== "campaign") {
      throw new TypeError("`channel`: only a campaign is cancelled per channel; a job cancel stops it on every channel");
    }
    if (typeof channel !== "string" || !CHANNEL_NAME.test(channel)) {
      throw new TypeError(`\`channel\`: ${JSON.stringify(channel)} is not a channel name (1 to 15 of a-z, 0-9 and _), e.g. "sms"`);
    }
    if (channel === "best") {
      throw new TypeError(
        '`channel`: "best" is not a channel a job is sent on; name the channel (e.g. "email"), or omit it for every channel',
      );
    }
  }
  let by = opts.by;
  if (by === undefined) by = defaultBy();
  else if (typeof by !== "string" || by.trim() === "") {
    throw new TypeError("`by`: a non-empty string is required (or omit it for user@host)");
  }
  const at = new Date(now.getTime());
  let until: Date;
  if (opts.until === undefined) until = new Date(at.getTime() + DEFAULT_FOR_MS);
  else if (opts.until instanceof Date) until = new Date(opts.until.getTime());
  else if (typeof opts.until === "number") until = new Date(at.getTime() + Math.round(opts.until * 1000));
  else throw new TypeError("`until`: a Date or a number of seconds from now is required");
  if (Number.isNaN(until.getTime())) throw new TypeError("`until`: an invalid Date (or seconds that are not a time)");
  if (until.getTime() <= at.getTime()) throw new TypeError(`\`until\`: ${until.toISOString()} is not in the future`);
  return { kind, id, channel, reason: opts.reason, by, at, until };
}

/** Who cancels when `by` is not given: user@host, as `tayori cancel` writes it. */
export function defaultBy(): string {
  let user = process.env.USER || process.env.LOGNAME || "";
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      user = "client"; // no passwd entry (some containers)
    }
  }
  const host = hostname();
  return host ? `${user}@${host}` : user;
}

/** (kind, id, channel) of a field; the id goes last, so it may hold anything. */
function parseField(field: string): Pick<Cancel, "kind" | "id" | "channel"> | null {
  const i = field.indexOf(SEP);
  if (i < 0) return null;
  const [kind, rest] = [field.slice(0, i), field.slice(i + 1)];
  if (kind === "job") return { kind, id: rest, channel: null };
  if (kind !== "campaign") return null;
  const j = rest.indexOf(SEP);
  if (j < 0) return null;
  const [channel, id] = [rest.slice(0, j), rest.slice(j + 1)];
  if (channel === EVERY_CHANNEL) return { kind, id, channel: null };
  return CHANNEL_NAME.test(channel) ? { kind, id, channel } : null;
}

/**
 * The cancel a field of the hash holds, if it is readable and active at `now`;
 * null for a lapsed one, a field of a kind this client does not know, or a value
 * the daemon would not read either.
 */
export function parseCancel(field: string, value: string, now: Date = new Date()): Cancel | null {
  const target = parseField(field);
  if (!target) return null;
  let data: unknown;
  try {
    data = JSON.parse(value);
  } catch {
    return null;
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) return null;
  const o = data as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length !== CANCEL_KEYS.length || !CANCEL_KEYS.every((k) => keys.includes(k))) return null;
  const { reason, by, at_ms: atMs, until_ms: untilMs } = o;
  if (typeof reason !== "string" || typeof by !== "string" || !Number.isSafeInteger(atMs) || !Number.isSafeInteger(untilMs)) {
    return null;
  }
  const at = new Date(atMs as number);
  const until = new Date(untilMs as number);
  if (Number.isNaN(at.getTime()) || Number.isNaN(until.getTime()) || until.getTime() <= now.getTime()) return null;
  return { ...target, reason, by, at, until };
}

/** The active, readable cancels of an `HGETALL` reply, oldest first. */
export function activeCancels(hash: Record<string, string>, now: Date = new Date()): Cancel[] {
  const found: Cancel[] = [];
  for (const [field, value] of Object.entries(hash)) {
    const c = parseCancel(field, value, now);
    if (c) found.push(c);
  }
  const key = (c: Cancel) => cancelField(c);
  return found.sort((a, b) => a.at.getTime() - b.at.getTime() || (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/**
 * The fields of an `HGETALL` reply that cancel the campaign or job `id` (lapsed
 * or unreadable values included: lifting removes them all).
 */
export function fieldsOf(hash: Record<string, string>, id: string): string[] {
  return Object.keys(hash).filter((f) => parseField(f)?.id === id);
}
