// An in-memory pair of connected Duplex streams: what one side writes, the other reads. For tests
// and for running a client and a server in one process without sockets.

import { Duplex } from "node:stream";

/** Two connected Duplexes. Ending one side ends the other's readable side; destroying one closes both. */
export function memoryPair(): [Duplex, Duplex] {
  let a: Duplex;
  let b: Duplex;
  const make = (peer: () => Duplex): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        const p = peer();
        if (p.destroyed) return cb(new Error("peer closed"));
        p.push(chunk);
        cb();
      },
      final(cb) {
        peer().push(null);
        cb();
      },
      destroy(err, cb) {
        const p = peer();
        if (!p.destroyed) p.destroy();
        cb(err);
      },
    });
  a = make(() => b);
  b = make(() => a);
  return [a, b];
}
