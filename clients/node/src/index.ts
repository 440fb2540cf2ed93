// Tayori's client for a CRM: enqueue jobs into Tayori's partitioned streams and
// read its events with recovery. See docs/crm.md in the Tayori repository.

export { CANCEL_KEYS, DEFAULT_FOR_MS, cancelField, cancelJson, cancelsKey } from "./cancels";
export type { CampaignCancelOptions, Cancel, CancelOptions } from "./cancels";
export { PIPELINE_CHUNK, ReplicationError, Tayori, rfc3339 } from "./client";
export type { EnqueueOptions, JobInput } from "./client";
export { RecentIds, ResultsConsumer, TERMINAL_TYPES } from "./consumer";
export type { ConsumerOptions, ConsumerStats, Handler, TayoriEvent } from "./consumer";
export type * from "./job-types";
export { LayoutError, checkLayout, crc32, jobStream, partitionOf, resultsStream } from "./layout";
