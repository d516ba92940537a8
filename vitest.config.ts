import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Each file starts its own daemons on port 0 in its own temp dataDir, so files run in parallel.
    fileParallelism: true,
    // Vitest's default is one fewer worker than cores: on the 2-core machines this project runs
    // on, that is one file at a time, while most files spend their time waiting on daemons,
    // agents and openssl. One worker per core (at least two) measured 350 s → 224 s for the suite.
    maxWorkers: Math.max(2, availableParallelism()),
  },
});
