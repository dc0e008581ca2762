// Real peers as an independent oracle: every frame captured from the original XCPU tools (9P2000.u)
// and from diod (9P2000.L) must decode and re-encode byte for byte.
//
// Deliberate exceptions, each checked precisely below:
// - the original statfs sends Tauth in the 9P2000 layout (no n_uname) on a 9P2000.u session; we
//   decode it with n_uname undefined and re-encode it with n_uname = NONUNAME (4 more bytes);
// - the diod capture contains a client frame of type 200, which must fail with unknown-type.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  type Dialect,
  decode,
  decodeDirents,
  decodeHeader,
  decodeStats,
  encode,
  encodeDirents,
  encodeStats,
  formatMessage,
  type Message,
  MsgType,
  messageName,
  NONUNAME,
  QTDIR,
} from "../../src/codec/index.js";
import { ProtocolError } from "../../src/errors.js";

interface Rec {
  conn: number;
  dir: "c2s" | "s2c";
  index: number;
  type: string | number;
  tag: number;
  size: number;
  hex?: string;
  head_hex?: string;
}

const DATA = new URL("../fixtures/captures", import.meta.url).pathname;
function load(name: string): Rec[] {
  return readFileSync(`${DATA}/${name}`, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Rec);
}

interface Tally {
  roundTrips: number;
  headOnly: number;
  quirkTauth: number;
  unknownType: number;
  dirReads: number;
  dirEntries: number;
  dirents: number;
}

/**
 * Checks every frame of a capture in the dialect negotiated on its connection, and the data of
 * directory reads (stat entries for 9P2000/.u, dirents for .L).
 */
function checkCapture(recs: Rec[], fallback: Dialect): Tally {
  const t: Tally = {
    roundTrips: 0,
    headOnly: 0,
    quirkTauth: 0,
    unknownType: 0,
    dirReads: 0,
    dirEntries: 0,
    dirents: 0,
  };
  // The capture lists each direction of a connection in order, one after the other, so the
  // dialect comes from a first pass over the Rversion frames and requests are matched to replies
  // by tag in order (the k-th reply with tag t answers the k-th request with tag t).
  const dialect = new Map<number, Dialect>();
  for (const r of recs) {
    if (r.type !== "Rversion" || r.hex === undefined) continue;
    const v = decode(Buffer.from(r.hex, "hex"), fallback);
    if (v.type === MsgType.Rversion && v.version.startsWith("9P2000"))
      dialect.set(r.conn, v.version as Dialect);
  }
  const pending = new Map<string, Message[]>(); // conn:tag → requests in order
  const dirFids = new Map<number, Set<number>>();
  for (const r of recs) {
    const d = dialect.get(r.conn) ?? fallback;
    const where = `conn ${r.conn} #${r.index} ${r.dir} ${r.type}`;
    if (r.hex === undefined) {
      // Large Twrite frames are stored as their first 64 bytes: check the header and that decode
      // reports the missing body as truncated, nothing else.
      const head = Buffer.from(r.head_hex ?? "", "hex");
      expect(decodeHeader(head), where).toEqual({
        size: r.size,
        type: MsgType[r.type as "Twrite"],
        tag: r.tag,
      });
      expect(() => decode(head, d), where).toThrow(expect.objectContaining({ reason: "truncated" }));
      t.headOnly++;
      continue;
    }
    const frame = Buffer.from(r.hex, "hex");
    expect(frame.length, where).toBe(r.size);
    if (typeof r.type === "number") {
      // Not a 9P message type: the client sent it on purpose to see the server's reaction.
      expect(decodeHeader(frame), where).toEqual({ size: r.size, type: r.type, tag: r.tag });
      let err: unknown;
      try {
        decode(frame, d);
      } catch (e) {
        err = e;
      }
      expect(err, where).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).reason, where).toBe("unknown-type");
      t.unknownType++;
      continue;
    }
    const msg = decode(frame, d);
    expect(messageName(msg.type), where).toBe(r.type);
    expect(msg.tag, where).toBe(r.tag);
    expect(formatMessage(msg).startsWith(r.type), where).toBe(true);
    const again = encode(msg, d);
    if (msg.type === MsgType.Tauth && d === "9P2000.u" && msg.n_uname === undefined) {
      const expected = Buffer.concat([frame, Buffer.from([0xff, 0xff, 0xff, 0xff])]);
      expected.writeUInt32LE(expected.length, 0);
      expect(again.toString("hex"), where).toBe(expected.toString("hex"));
      expect(decode(again, d), where).toEqual({ ...msg, n_uname: NONUNAME });
      t.quirkTauth++;
    } else {
      expect(again.toString("hex"), where).toBe(r.hex);
      t.roundTrips++;
    }

    // Session state: dialect from Rversion, directory fids from Ropen/Rlopen, reads matched by tag.
    const key = `${r.conn}:${msg.tag}`;
    if (r.dir === "c2s") {
      const q = pending.get(key) ?? [];
      q.push(msg);
      pending.set(key, q);
      continue;
    }
    const req = pending.get(key)?.shift();
    if (req === undefined) continue;
    const dirs = dirFids.get(r.conn) ?? new Set<number>();
    dirFids.set(r.conn, dirs);
    if ((msg.type === MsgType.Ropen || msg.type === MsgType.Rlopen) && (msg.qid.type & QTDIR) !== 0) {
      if (req.type === MsgType.Topen || req.type === MsgType.Tlopen) dirs.add(req.fid);
    } else if (msg.type === MsgType.Rclunk && req.type === MsgType.Tclunk) {
      dirs.delete(req.fid);
    } else if (msg.type === MsgType.Rread && req.type === MsgType.Tread && dirs.has(req.fid)) {
      const stats = decodeStats(msg.data, d);
      expect(encodeStats(stats, d).equals(msg.data), where).toBe(true);
      t.dirReads++;
      t.dirEntries += stats.length;
    } else if (msg.type === MsgType.Rreaddir) {
      const ents = decodeDirents(msg.data);
      expect(encodeDirents(ents).equals(msg.data), where).toBe(true);
      t.dirents += ents.length;
    }
  }
  return t;
}

describe("captured XCPU 1.2.3 traffic (9P2000.u)", () => {
  it("every frame decodes and re-encodes byte for byte; directory reads decode as stat entries", () => {
    const recs = load("xcpu-1.2.3-wire.jsonl");
    const t = checkCapture(recs, "9P2000.u");
    expect(t.roundTrips + t.quirkTauth + t.headOnly + t.unknownType).toBe(recs.length);
    expect(t.quirkTauth).toBe(2); // the two statfs connections
    expect(t.headOnly).toBeGreaterThan(0);
    expect(t.headOnly).toBe(212);
    // statfs lists the xcpufs root and session directories: 76 reads, 343 stat entries
    expect(t.dirReads).toBe(76);
    expect(t.dirEntries).toBe(343);
    expect(t.unknownType).toBe(0);
  });
});

describe("captured diod traffic (9P2000.L)", () => {
  it("every frame decodes and re-encodes byte for byte; Rreaddir data decodes as dirents", () => {
    const recs = load("diod-9p2000L-wire.jsonl");
    const t = checkCapture(recs, "9P2000.L");
    expect(t.roundTrips + t.unknownType).toBe(recs.length);
    expect(t.unknownType).toBe(1);
    expect(t.dirents).toBe(20);
  });
});
