// The 9P client: connections (Client), fids (Fid), path-level access (Fsys) and address helpers.

import type { Duplex } from "node:stream";
import type { Address } from "../transport/index.js";
import { type AuthFid, Client, type ClientOptions } from "./client.js";
import { Fsys } from "./fs.js";

// The errors a client call can end with (one copy shared with every entry: instanceof holds across them).
export {
  ClosedError,
  ConnectionError,
  causeOf,
  connectFailureWords,
  MessageTooLargeError,
  NinepError,
  ProtocolError,
  RemoteError,
  TimeoutError,
} from "../errors.js";
export { afterIoTimeout } from "../io-timeout.js";
export {
  type Address,
  AddressError,
  DEFAULT_9P_PORT,
  type DialOptions,
  dial,
  FrameTransport,
  formatAddress,
  type Listener,
  type ListenOptions,
  listen,
  memoryPair,
  parseAddress,
} from "../transport/index.js";
export { dmFromLinuxMode, linuxFlagsFromOpenMode, linuxPermFromDm, S_IF, statFromAttr } from "./attr.js";
export {
  AuthFid,
  type CallOptions,
  Client,
  type ClientOptions,
  DEFAULT_CLIENT_MSIZE,
  type ReplyFor,
  type Request,
} from "./client.js";
export { VersionError, WalkError } from "./errors.js";
export { Fid, type GetattrResult, type SetattrChanges, type StatfsResult, splitPath } from "./fid.js";
export {
  DEFAULT_WINDOW,
  Fsys,
  PipelinedWriter,
  type ReadOptions,
  readChunks,
  type WriteOptions,
} from "./fs.js";

export interface MountOptions extends ClientOptions {
  /** User name for Tauth/Tattach. Default: $USER or "nobody". */
  uname?: string;
  /** Tree to attach. Default "". */
  aname?: string;
  /** Numeric uid for .u/.L (NONUNAME when absent). */
  n_uname?: number;
  /**
   * 9P2000.L: the group of files this mount creates (Tlcreate, Tmkdir, Tsymlink, Tmknod). Default:
   * this process's gid, which a server refuses (EPERM) when the attached user is not in it.
   */
  gid?: number;
  /** Run an authentication protocol on the afid before attaching (not called when auth is not required). */
  authenticate?: (afid: AuthFid) => Promise<void>;
}

/** Connects and attaches; the returned Fsys closes the connection in `close()`. */
export async function mount(address: string | Address | Duplex, opts: MountOptions = {}): Promise<Fsys> {
  const client = await Client.connect(address, opts);
  try {
    const uname = opts.uname ?? process.env.USER ?? "nobody";
    const aname = opts.aname ?? "";
    let afid: AuthFid | null = null;
    if (opts.authenticate) {
      afid = await client.auth(uname, aname, { n_uname: opts.n_uname });
      if (afid) await opts.authenticate(afid);
    }
    const root = await client.attach(uname, aname, {
      afid: afid ?? undefined,
      n_uname: opts.n_uname,
      gid: opts.gid,
    });
    return new Fsys(client, root, { ownsClient: true });
  } catch (err) {
    client.destroy();
    throw err;
  }
}
