/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The dev server forwards API calls to a running stack (ops/stack listens on :8000 by default).
const api = process.env.SLUICE_API_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    // Small assets stay files: a strict CSP allows img-src data:, but fonts/scripts must be 'self'.
    assetsInlineLimit: 0,
  },
  server: {
    proxy: {
      "/api": { target: api, changeOrigin: false },
      "/schema": { target: api, changeOrigin: false },
      "/ready": { target: api, changeOrigin: false },
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
