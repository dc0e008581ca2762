// The ninep conformance suite against the xcpufs tree (9P2000.u and 9P2000).

import { mount } from "@clustermatic/ninep/client";
import { OREAD } from "@clustermatic/ninep/codec";
import { type ConformanceTarget, conformanceChecks } from "@clustermatic/ninep/testing";
import { describe, it } from "vitest";
import { startXcpufs } from "../src/index.js";

function target(version: "9P2000" | "9P2000.u"): ConformanceTarget {
  return {
    version,
    uname: "conformance",
    file: ["arch"],
    blockingFile: ["0", "wait"],
    async start() {
      const h = await startXcpufs({ port: 0, noAuth: true, sameUser: true });
      // a persistent session that never runs anything: reads of its `wait` block
      const fs = await mount(h.address, { uname: "conformance", authenticate: async () => {} });
      const clone = await fs.open("clone", OREAD);
      const sid = (await clone.read(0, 16)).toString();
      const ctl = await fs.open(`${sid}/ctl`, 1);
      await ctl.write(0, "type persistent\n");
      await ctl.clunk();
      await clone.clunk();
      await fs.close();
      return { address: h.address, stop: () => h.close() };
    },
  };
}

for (const version of ["9P2000.u", "9P2000"] as const) {
  describe(`ninep conformance suite on ${version}`, () => {
    for (const c of conformanceChecks(target(version))) {
      it(`${c.name} [${c.rules.join(",")}]`, () => c.run());
    }
  });
}
