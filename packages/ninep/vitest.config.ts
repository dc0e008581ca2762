import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["@clustermatic/source"] },
  ssr: { resolve: { conditions: ["@clustermatic/source"] } },
  test: {
    name: "ninep",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // expect.poll waits for effects seen through another socket or a counter; its default of 1 s
    // is short for a machine busy with the other packages' tests.
    expect: { poll: { timeout: 10_000 } },
  },
});
