export { startSimulator } from "./simulator.js";
export { resolveRecordingPath } from "./recordings.js";
export { SimulatorError, type SimulatorErrorCode } from "./errors.js";
export { depthRequestWeight } from "./rest.js";
export {
  parseDepthDiff,
  parseSnapshotBody,
  TrueBook,
  type BookSnapshot as TrueBookSnapshot,
} from "./book.js";
export type {
  CloseReason,
  ConnectionFilter,
  ConnectionStats,
  LimitResponseRecord,
  ReplayProgress,
  RestRequestRecord,
  Simulator,
  SimulatorOptions,
  SimulatorStats,
} from "./options.js";
