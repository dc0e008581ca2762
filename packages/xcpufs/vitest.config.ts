import { defineProject } from "vitest/config";

export default defineProject({
  resolve: { conditions: ["@clustermatic/source"] },
  ssr: { resolve: { conditions: ["@clustermatic/source"] } },
  test: {
    name: "xcpufs",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
