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
  /**
   * Per-stream limits over `DEFAULT_STREAM_LIMITS`: used when a stream is created, and applied to an
   * existing one (only the fields given here).
   */
  readonly streams?: Partial<Record<StreamName, Partial<StreamLimits>>>;
  /**
   * Replicas of every stream and KV bucket (`STREAM_REPLICAS`): used when one is created, and
   * applied to existing ones. Default: 1 for new ones; existing ones keep theirs.
   */
  readonly replicas?: number | undefined;
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
 * What an existing stream must change to fit l2flow: its subjects, limits retention and discarding
 * the oldest always; age, bytes, duplicate window and replicas only where `given` sets them (an
 * operator's `nats stream edit` stays otherwise). Undefined when it fits already.
 */
function streamUpdate(
  current: StreamConfig,
  name: StreamName,
  given: Partial<StreamLimits>,
): StreamConfig | undefined {
  const wanted: StreamConfig = {
    ...current,
    subjects: [...STREAM_SUBJECTS[name]],
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    ...(given.maxAgeMs !== undefined ? { max_age: nanos(given.maxAgeMs) } : {}),
    ...(given.maxBytes !== undefined ? { max_bytes: given.maxBytes } : {}),
    ...(given.duplicateWindowMs !== undefined ? { duplicate_window: nanos(given.duplicateWindowMs) } : {}),
    ...(given.replicas !== undefined ? { num_replicas: given.replicas } : {}),
  };
  const same =
    wanted.subjects.join(" ") === (current.subjects ?? []).join(" ") &&
    (["retention", "discard", "max_age", "max_bytes", "duplicate_window", "num_replicas"] as const).every(
      (k) => wanted[k] === current[k],
    );
  return same ? undefined : wanted;
}

/**
 * Creates l2flow's streams and KV buckets where missing, with `DEFAULT_STREAM_LIMITS` (and the
 * options'); makes existing streams fit l2flow (subjects, limits retention, oldest discarded) and
 * applies only the limits the options give. So retention, size and replicas an operator set on an
 * existing stream survive every service's start (they used to be reset to the defaults, deleting
 * what a longer `max_age` had kept), and a service whose NATS user may not change streams (the
 * gateway's) starts once they exist. Idempotent: nothing is sent but stream info when all fits.
 */
export async function provisionTopology(bus: Bus, options: TopologyOptions = {}): Promise<void> {
  const names: readonly StreamName[] = options.only ?? Object.values(STREAMS);
  for (const name of names) {
    const given: Partial<StreamLimits> = {
      ...(options.replicas !== undefined ? { replicas: options.replicas } : {}),
      ...options.streams?.[name],
    };
    let current: StreamConfig | undefined;
    try {
      current = (await bus.jsm.streams.info(name)).config;
    } catch (err) {
      if (!isNotFound(err)) throw streamError(name, err);
    }
    try {
      if (current === undefined)
        await bus.jsm.streams.add(streamConfig(name, { ...DEFAULT_STREAM_LIMITS[name], ...given }));
      else {
        const update = streamUpdate(current, name, given);
        if (update !== undefined) await bus.jsm.streams.update(name, update);
      }
    } catch (err) {
      throw streamError(name, err);
    }
  }
  if (options.buckets ?? true) {
    for (const bucket of [BUCKETS.book, BUCKETS.state]) {
      await openKv(bus, bucket, { replicas: options.replicas ?? 1 });
      if (options.replicas === undefined) continue;
      const stream = `KV_${bucket}`;
      const { config } = await bus.jsm.streams.info(stream);
      if (config.num_replicas !== options.replicas)
        await bus.jsm.streams
          .update(stream, { ...config, num_replicas: options.replicas })
          .catch((err: unknown) => {
            throw new BusError(
              "STREAM_CONFIG",
              `cannot set the replicas of KV bucket ${bucket}: ${errMessage(err)}`,
              {
                cause: err,
              },
            );
          });
    }
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
  const message = errMessage(err);
  const hint = /permission/i.test(message)
    ? "this NATS user may not create or change streams: start ingest, the normalizer or the analyzer first (they create them), or give the user $JS.API.STREAM.CREATE/UPDATE"
    : `an existing stream with other subjects or storage may need to be removed with \`nats stream rm ${name}\``;
  return new BusError("STREAM_CONFIG", `cannot create or update stream ${name}: ${message} (${hint})`, {
    cause: err,
  });
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
