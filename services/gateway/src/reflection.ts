import type { Server } from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { FILE_DESCRIPTOR_PROTOS } from "./gen/descriptor.js";

/** Fully qualified name of the MarketData service, as gRPC health and reflection name it. */
export const MARKET_DATA_SERVICE = "l2flow.v1.MarketData";

/**
 * Adds gRPC server reflection (v1 and v1alpha) describing `l2flow.v1`, from the descriptors generated
 * from proto/ (src/gen/descriptor.ts), so `grpcurl -plaintext host:50051 list` works without the
 * .proto files.
 */
export function addReflection(server: Server): void {
  const fileDescriptorProtos = FILE_DESCRIPTOR_PROTOS.map((b64) => Buffer.from(b64, "base64"));
  // The reflection service only reads `fileDescriptorProtos` from each entry of the package definition.
  const reflection = new ReflectionService({
    "l2flow.v1": { format: "Protocol Buffer 3 DescriptorProto", type: {}, fileDescriptorProtos },
  });
  reflection.addToServer(server);
}
