/** The gateway service: the gRPC MarketData API over the JetStream log (see docs/gateway.md). */
export { loadConfig, type GatewayConfig } from "./config.js";
export { startGateway, type GatewayDeps, type GatewayService } from "./service.js";
export type { GrpcTlsMode } from "./tls.js";
export { RpcError } from "./errors.js";
export { MARKET_DATA_SERVICE } from "./reflection.js";
