// Transports: addresses, dialing and listening, and whole-frame I/O over any Duplex.
export { type Address, AddressError, DEFAULT_9P_PORT, formatAddress, parseAddress } from "./address.js";
export { type DialOptions, dial, type Listener, type ListenOptions, listen } from "./dial.js";
export { FrameTransport, type FrameTransportHandlers, type FrameTransportOptions } from "./frames.js";
export { memoryPair } from "./memory.js";
