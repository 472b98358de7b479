// Builds the review workspace into dist/, which the gateway serves under / (docs/web.md).
// The gateway's Content-Security-Policy allows only its own origin and no inline script or style:
// no module-preload polyfill (an inline script), assets always as files, CSS in a file.
import preact from "@preact/preset-vite";
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  plugins: [preact()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  server: {
    // `npm run dev`: the API of a gateway started with `aima serve all` (default port 8080).
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
});
