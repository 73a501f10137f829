/**
 * The l2flow command-line tool (`l2flow tail|book|replay|record|status`, see docs/cli.md), and the
 * helpers other code may share: a recorded event ↔ the `MD_RAW` message ingest stores for it.
 */
export { main } from "./cli.js";
export { EXIT, UsageError, type CliIo, type CliOutput } from "./io.js";
export { rawMessageOf, recordedEventOf, REPLAY_CONNECTION, type RawMessage, type RawSkip } from "./raw.js";
export { payloadJson } from "./decode.js";
export { renderBook } from "./commands/book.js";
export { subjectWithin, subjectsOverlap } from "./streams.js";
