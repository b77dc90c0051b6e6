// Uploads a file with tus-js-client for the tus tests; prints one JSON line with what happened.
// node upload.mjs <endpoint> <key> <file> [--parallel N] [--resume <upload url>] [--no-retry]
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.TUS_JS_MODULES + "/");
const tus = require("tus-js-client");

const [endpoint, key, path, ...rest] = process.argv.slice(2);
const option = (name) => {
  const at = rest.indexOf(name);
  return at >= 0 ? rest[at + 1] : undefined;
};
const data = readFileSync(path);
let fileId = null;
let jobId = null;
const upload = new tus.Upload(data, {
  endpoint,
  uploadUrl: option("--resume"),
  headers: { Authorization: `Bearer ${key}` },
  metadata: { filename: "from-js.csv", filetype: "text/csv" },
  parallelUploads: Number(option("--parallel") ?? 1),
  retryDelays: rest.includes("--no-retry") ? null : [0, 500, 1000],
  onAfterResponse: (req, res) => {
    fileId = res.getHeader("Sluice-File-Id") ?? fileId;
    jobId = res.getHeader("Sluice-Job-Id") ?? jobId;
  },
  onSuccess: () => {
    console.log(JSON.stringify({ ok: true, url: upload.url, fileId, jobId }));
  },
  onError: (error) => {
    console.log(JSON.stringify({ ok: false, url: upload.url, error: String(error) }));
  },
});
upload.start();
