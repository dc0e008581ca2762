// @clustermatic/statfs: the cluster monitor (statfs) and its reader (xstat) as a library.

export {
  ADMIN_UID_DEFAULT,
  ADMIN_USER,
  adminUid,
  KeyError,
  loadPrivateKey,
  parsePrivateKey,
  signChallenge,
  verifyResponse,
} from "./auth.js";
export {
  MAX_DOCUMENT_BYTES,
  MOUNTED_STATE,
  readMountedState,
  StatfsClient,
  StatfsTooLargeError,
  StatfsUnreachableError,
} from "./client.js";
export {
  type Config,
  ConfigError,
  type ConfigIssue,
  defaultPoll,
  expandPattern,
  loadConfig,
  type NodeConfig,
  type PollSettings,
  parseConfig,
  parseDuration,
  splitAddress,
  XCPUFS_PORT,
} from "./config.js";
export { DEFAULT_HTTP, STATFS_PORT, type Statfs, type StatfsOptions, startStatfs } from "./daemon.js";
export { infoText, type StatfsTreeOptions, statfsBackend } from "./fs.js";
export { type HttpOptions, type HttpServer, renderMetrics, startHttp } from "./http.js";
export {
  type ConnectOptions,
  type Connector,
  Monitor,
  type NodeRecord,
  type NodeSession,
  type NodeView,
  type PollResult,
  Status,
  statusOf,
  viewOf,
} from "./monitor.js";
export { Exposition, Histogram, PROM_CONTENT_TYPE } from "./prom.js";
export {
  ARCH_UNKNOWN,
  clampField,
  FIELD_MAX,
  formatParsed,
  formatTable,
  type ParsedRow,
  parseTable,
  TableFormatError,
} from "./table.js";
export { countJobs, parseSysinfo, SYSINFO_FILE, XcpufsConnector } from "./xcpufs-session.js";
