// Public face of @clustermatic/ninep/server: the 9P server framework (Server, the Backend seam,
// a synthetic file tree and Cmdtab-style control files).

/** What handlers throw to answer Rerror (FsError(Ename.X)), and the errno each name maps to. */
export { Ename, Errno, errnoForEname, FsError, toFsError } from "../errors.js";
/** Bounded concurrency for a handler's own work (the passthrough's directory reads use it too). */
export { mapLimit } from "../map-limit.js";
export type * from "./backend.js";
export { attrFromStat, MIN_MSIZE, ServerConnection, wstatChanges } from "./connection.js";
export { type CtlCommand, CtlTable, parseFields, quoteField } from "./ctl.js";
export { type PassthroughBackend, type PassthroughOptions, passthrough } from "./passthrough.js";
export { DEFAULT_MAX_MSIZE, type Logger, Server, type ServerOptions } from "./server.js";
export {
  abortable,
  accessBits,
  allocPath,
  BytesFile,
  commandFile,
  generatedFile,
  type Handle,
  hasPerm,
  type PermissionPolicy,
  SynthDir,
  type SynthDirOptions,
  SynthFile,
  type SynthFileOptions,
  SynthNode,
  type SynthNodeOptions,
  sliceAt,
  staticFile,
  treeBackend,
} from "./tree.js";
