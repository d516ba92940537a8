import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Each file starts its own daemons on port 0 in its own temp dataDir, so files run in parallel.
    fileParallelism: true,
  },
});
