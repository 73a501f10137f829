import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // Workspace packages resolve to their TypeScript sources, so tests need no build step.
    conditions: ["l2flow-source"],
  },
  ssr: {
    resolve: {
      conditions: ["l2flow-source"],
    },
  },
  test: {
    include: [
      "libs/*/src/**/*.test.ts",
      "libs/*/test/**/*.test.ts",
      "services/*/src/**/*.test.ts",
      "services/*/test/**/*.test.ts",
      "test/**/*.test.ts",
    ],
    exclude: ["**/node_modules/**", "**/dist/**"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: ["default"],
  },
});
