import { status, type ServerErrorResponse } from "@grpc/grpc-js";
import { L2flowError } from "@l2flow/runtime";

/**
 * A call that ends with a gRPC status other than OK. `code` is `RPC_<STATUS NAME>`; the message is
 * sent to the client as the status details, so it says what is wrong and what is accepted.
 */
export class RpcError extends L2flowError {
  /** The gRPC status code sent to the client. */
  readonly grpcCode: status;
  constructor(grpcCode: status, message: string, options: { cause?: unknown } = {}) {
    super(`RPC_${status[grpcCode]}`, message, {
      retryable: grpcCode === status.UNAVAILABLE || grpcCode === status.RESOURCE_EXHAUSTED,
      ...options,
    });
    this.grpcCode = grpcCode;
  }
}

/** `INVALID_ARGUMENT` with what is accepted. */
export const invalidArgument = (message: string) => new RpcError(status.INVALID_ARGUMENT, message);

/** `NOT_FOUND`. */
export const notFound = (message: string) => new RpcError(status.NOT_FOUND, message);

/** Maps any failure to an `RpcError` (unknown failures become INTERNAL, with the cause kept for logs). */
export function toRpcError(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new RpcError(status.INTERNAL, `internal error: ${message}`, { cause: err });
}

/** The object grpc-js turns into the status sent to the client. */
export function toServiceError(err: RpcError): ServerErrorResponse {
  return Object.assign(new Error(err.message), { code: err.grpcCode, details: err.message });
}

/** The gRPC status name of a code, for metric labels ("OK", "NOT_FOUND", ...). */
export function statusName(code: status): string {
  return status[code] ?? String(code);
}
