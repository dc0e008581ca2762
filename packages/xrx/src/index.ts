// @clustermatic/xrx: the client library behind xrx, xk and xps.
export { type CliIo, parseCommandLine, UsageError } from "./cli/args.js";
export { ElfError, type ElfInfo, isElf, machineName, parseElf } from "./elf.js";
export { type JobOptions, type JobResult, runJob } from "./job.js";
export {
  ADMIN_KEY,
  defaultKeyFile,
  defaultKeyFiles,
  ed25519PasskeyDecrypt,
  KeyError,
  loadPrivateKey,
  type PrivateKey,
  parseOpenSshPrivateKey,
  parsePrivateKey,
  publicKeyLine,
  rsaPkcs1Decrypt,
} from "./keys.js";
export {
  findLibraries,
  LibraryNotFoundError,
  type LibraryOptions,
  type LibrarySet,
  readLdSoConf,
} from "./libs.js";
export { mapLimit } from "./limit.js";
export * from "./nodes.js";
export { formatBytes, type MuxOptions, OutputMux, Progress, type Sink, StreamMux } from "./output.js";
export { jobMainProcesses, type ProcRecord, parseProcs, statColumn, timeColumn } from "./procs.js";
export { decodeXcpuEnv, encodeEnv, QuoteError, quote, quoteArgs, TokenizeError, tokenize } from "./quote.js";
export {
  fanout,
  localArch,
  lookupProgram,
  normaliseArch,
  type PlanOptions,
  planLocal,
  planStaging,
  type StageFile,
  type StagePlan,
  StagingError,
  sysrootFor,
  treeWidth,
} from "./staging.js";
export {
  aggregateExit,
  decodeWaitStatus,
  describeOutcome,
  type ExitStatus,
  type NodeOutcome,
  shellCode,
  summarize,
} from "./status.js";
export {
  ADMIN_UID,
  ADMIN_USER,
  adminIdentity,
  answerChallenge,
  type ConnectOptions,
  type Identity,
  onNode,
  reasonOf,
  Session,
  userIdentity,
  writePipelined,
  XcpuError,
  XcpuNode,
} from "./xcpu.js";
