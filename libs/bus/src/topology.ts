import { nanos } from "@nats-io/transport-node";
import {
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { BUCKETS, STREAMS, STREAM_SUBJECTS } from "@l2flow/contracts";
import type { Bus } from "./connect.js";
import { BusError } from "./errors.js";

/** Retention and storage of one stream. */
export interface StreamLimits {
  /** Oldest message kept; 0 = no age limit. */
  readonly maxAgeMs: number;
  /** Bytes kept; -1 = unlimited. Oldest messages are discarded first. */
  readonly maxBytes: number;
  /** JetStream's duplicate window for `Nats-Msg-Id`. */
  readonly duplicateWindowMs: number;
  /** Replicas (1 on one server, 3 in a cluster). */
  readonly replicas: number;
  readonly storage: "file" | "memory";
}

const HOUR = 3_600_000;
const GiB = 1024 ** 3;

/**
 * Defaults per stream: MD_RAW 24 h / 10 GiB / 2 min dedupe; MD_NORM 24 h / 10 GiB; MD_WINDOW 7 days /
 * 2 GiB; SIGNALS 30 days / 1 GiB; file storage, one replica.
 */
export const DEFAULT_STREAM_LIMITS: Readonly<Record<StreamName, StreamLimits>> = {
  MD_RAW: {
    maxAgeMs: 24 * HOUR,
    maxBytes: 10 * GiB,
    duplicateWindowMs: 120_000,
    replicas: 1,
    storage: "file",
  },
  MD_NORM: {
    maxAgeMs: 24 * HOUR,
    maxBytes: 10 * GiB,
    duplicateWindowMs: 120_000,
    replicas: 1,
    storage: "file",
  },
  MD_WINDOW: {
    maxAgeMs: 7 * 24 * HOUR,
    maxBytes: 2 * GiB,
    duplicateWindowMs: 600_000,
    replicas: 1,
    storage: "file",
  },
  SIGNALS: {
    maxAgeMs: 30 * 24 * HOUR,
    maxBytes: 1 * GiB,
    duplicateWindowMs: 600_000,
    replicas: 1,
    storage: "file",
  },
};

/** The names of l2flow's streams. */
export type StreamName = (typeof STREAMS)[keyof typeof STREAMS];

/** Options for `provisionTopology`. */
export interface TopologyOptions {
  /** Per-stream overrides of `DEFAULT_STREAM_LIMITS`. */
  readonly streams?: Partial<Record<StreamName, Partial<StreamLimits>>>;
  /** Replicas of the KV buckets. Default 1. */
  readonly kvReplicas?: number;
  /** Which streams to provision. Default: all four. */
  readonly only?: readonly StreamName[];
  /** Also create the KV buckets. Default true. */
  readonly buckets?: boolean;
}

/** Builds the JetStream config of one stream from limits. */
export function streamConfig(
  name: StreamName,
  limits: StreamLimits,
): Partial<StreamConfig> & { name: string } {
  return {
    name,
    subjects: [...STREAM_SUBJECTS[name]],
    retention: RetentionPolicy.Limits,
    storage: limits.storage === "file" ? StorageType.File : StorageType.Memory,
    max_age: nanos(limits.maxAgeMs),
    max_bytes: limits.maxBytes,
    duplicate_window: nanos(limits.duplicateWindowMs),
    num_replicas: limits.replicas,
    discard: DiscardPolicy.Old,
  };
}

/**
 * Creates or updates l2flow's streams and KV buckets. Idempotent: running it again with the same
 * options changes nothing; with new limits it updates the streams in place.
 */
export async function provisionTopology(bus: Bus, options: TopologyOptions = {}): Promise<void> {
  const names: readonly StreamName[] = options.only ?? Object.values(STREAMS);
  for (const name of names) {
    const limits = { ...DEFAULT_STREAM_LIMITS[name], ...options.streams?.[name] };
    const config = streamConfig(name, limits);
    try {
      await bus.jsm.streams.info(name);
      await bus.jsm.streams.update(name, config);
    } catch (err) {
      if (isNotFound(err)) {
        try {
          await bus.jsm.streams.add(config);
        } catch (addErr) {
          throw streamError(name, addErr);
        }
      } else {
        throw streamError(name, err);
      }
    }
  }
  if (options.buckets ?? true) {
    await openKv(bus, BUCKETS.book, { replicas: options.kvReplicas ?? 1 });
    await openKv(bus, BUCKETS.state, { replicas: options.kvReplicas ?? 1 });
  }
}

/** Opens (creating if needed) a KV bucket keeping one value per key. */
export async function openKv(bus: Bus, bucket: string, options: { replicas?: number } = {}): Promise<KV> {
  const kvm = new Kvm(bus.nc);
  try {
    return await kvm.create(bucket, { history: 1, replicas: options.replicas ?? 1 });
  } catch (err) {
    throw new BusError("STREAM_CONFIG", `cannot open KV bucket ${bucket}: ${errMessage(err)}`, {
      cause: err,
    });
  }
}

function isNotFound(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.code === 10059;
  return (err as { name?: string } | undefined)?.name === "StreamNotFoundError";
}

function streamError(name: string, err: unknown): BusError {
  return new BusError(
    "STREAM_CONFIG",
    `cannot create or update stream ${name}: ${errMessage(err)} (an existing stream with other subjects or storage may need to be removed with \`nats stream rm ${name}\`)`,
    { cause: err },
  );
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
