// The whole public face of @clustermatic/ninep; subpaths (./codec, ./client, ./server, ./testing,
// ./nodes, ./keys) export the same pieces for consumers that want only one.
export * from "./client/index.js";
export * from "./codec/index.js";
export * from "./errors.js";
export * from "./keys/index.js";
export * from "./nodes/index.js";
export * from "./server/index.js";
