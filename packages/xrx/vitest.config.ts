import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["@clustermatic/source"] },
  ssr: { resolve: { conditions: ["@clustermatic/source"] } },
  test: {
    name: "xrx",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
