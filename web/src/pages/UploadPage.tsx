import "@uppy/core/css/style.min.css";
import "@uppy/dashboard/css/style.min.css";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Uppy, { type UppyFile } from "@uppy/core";
import Dashboard from "@uppy/dashboard";
import GoldenRetriever from "@uppy/golden-retriever";
import Tus from "@uppy/tus";
import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";
import { Link } from "react-router";
import { useAuth } from "../auth";
import { api, authHeaders, getApiKey } from "../lib/api";
import { etaSeconds, RateMeter } from "../lib/eta";
import { formatByteRate, formatBytes, formatDuration, formatPercent } from "../lib/format";
import { isTerminal } from "../lib/jobProgress";
import type { FileRecord, JobRecord, UploadSession, WebConfig } from "../lib/types";
import { followState } from "../lib/throttle";
import { tusChunkSize, tusUploadId, uploadErrorDetail } from "../lib/uploadErrors";
import { useJobStream } from "../useJobStream";
import { usePageTitle } from "../usePageTitle";
import { Badge, ConfirmDialog, ErrorBox, JobLive, Loading, ProgressBar } from "../components/ui";

type Meta = { filename?: string; filetype?: string; process?: string; [k: string]: unknown };
type Body = Record<string, never>;
type SFile = UppyFile<Meta, Body>;

const FALLBACK_CONFIG: WebConfig = {
  max_upload_bytes: 0,
  accepted_types: [".csv", ".tsv", ".txt", ".xlsx", ".gz"],
  part_size: 8 * 1024 * 1024,
  tus_endpoint: "/api/v1/tus/",
};

/** How often the transfers table reads Uppy's state while it changes. */
const PROGRESS_INTERVAL_MS = 250;

/** Refusals a retry cannot change: the file itself is the problem (type, size, quota). */
const PERMANENT = new Set([400, 403, 413, 415, 422]);

interface Stored {
  fileId: string | null;
  jobId: string | null;
  process: boolean;
  lookupError?: string;
}

/** Stored results survive a reload of the tab (Golden Retriever keeps the finished rows too). */
const RESULTS_ITEM = "sluice.uploadResults";
function loadResults(): Record<string, Stored> {
  try {
    return JSON.parse(sessionStorage.getItem(RESULTS_ITEM) ?? "{}") as Record<string, Stored>;
  } catch {
    return {};
  }
}

export default function UploadPage() {
  usePageTitle("Upload");
  const config = useQuery({
    queryKey: ["web-config"],
    queryFn: () => api<WebConfig>("/api/v1/web/config", { key: null }),
    staleTime: 10 * 60_000,
    retry: 1,
  });
  if (config.isPending) return <Loading what="upload settings" />;
  return (
    <section className="page" data-testid="upload-page">
      <h1>Upload</h1>
      {config.isError ? (
        <p className="alert alert-info" role="status">
          The server's upload settings could not be read ({config.error.message}); the server still checks every file.
        </p>
      ) : null}
      <Uploader config={config.data ?? FALLBACK_CONFIG} />
    </section>
  );
}

function Uploader({ config }: { config: WebConfig }) {
  const { apiKey, me } = useAuth();
  const client = useQueryClient();
  const target = useRef<HTMLDivElement>(null);
  const [uppy, setUppy] = useState<Uppy<Meta, Body> | null>(null);
  const [processNew, setProcessNew] = useState(true);
  const processRef = useRef(processNew);
  processRef.current = processNew;
  const [files, setFiles] = useState<SFile[]>([]);
  const [recovered, setRecovered] = useState(false);
  const [results, setResults] = useState<Record<string, Stored>>(loadResults);
  const [errors, setErrors] = useState<Record<string, { detail: string; status: number }>>({});
  const [notices, setNotices] = useState<string[]>([]);
  const meters = useRef(new Map<string, RateMeter>());

  const remember = useCallback((id: string, r: Stored | null) => {
    setResults((prev) => {
      const next = { ...prev };
      if (r) next[id] = r;
      else delete next[id];
      try {
        sessionStorage.setItem(RESULTS_ITEM, JSON.stringify(next));
      } catch {
        /* storage full or disabled: rows just won't survive a reload */
      }
      return next;
    });
  }, []);

  useEffect(() => {
    if (!target.current || !apiKey) return;
    const u = new Uppy<Meta, Body>({
      // One store per owner: another key in this browser does not see (or resume) these uploads.
      id: `sluice-${me?.owner_id ?? "me"}`,
      autoProceed: false,
      allowMultipleUploadBatches: true,
      restrictions: {
        maxFileSize: config.max_upload_bytes > 0 ? config.max_upload_bytes : null,
        allowedFileTypes: config.accepted_types.length ? config.accepted_types : null,
      },
    });
    u.use(Dashboard<Meta, Body>, {
      inline: true,
      target: target.current,
      width: "100%",
      height: 340,
      theme: "light",
      proudlyDisplayPoweredByUppy: false,
      // The transfers table below shows progress, speed and ETA and has the buttons; the status bar
      // repeated them and animated (a width transition restarted by every progress event).
      disableStatusBar: true,
      showRemoveButtonAfterComplete: true,
      disableThumbnailGenerator: true,
      fileManagerSelectionType: "files",
      note:
        `CSV, TSV, TXT, XLSX or gzip` +
        (config.max_upload_bytes > 0 ? `, up to ${formatBytes(config.max_upload_bytes)} each` : "") +
        ". Uploads resume after a reload or a lost connection.",
    } as never);
    u.use(Tus<Meta, Body>, {
      endpoint: config.tus_endpoint || "/api/v1/tus/",
      headers: () => authHeaders(getApiKey()),
      chunkSize: tusChunkSize(config.part_size),
      // With at most 2 event streams (streamSlots) this leaves 2 of the browser's 6 connections for API calls.
      limit: 2,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      allowedMetaFields: ["filename", "filetype", "process"],
    });
    u.use(GoldenRetriever, { serviceWorker: false });

    // Uppy changes its state on every progress event of every PATCH: reading it at most 4 times a
    // second, not every frame, keeps the tab's renderer nearly idle while bytes flow.
    const follow = followState(
      u,
      () => {
        setFiles(u.getFiles());
        setRecovered(!!u.getState().recoveredState);
      },
      PROGRESS_INTERVAL_MS,
    );
    u.on("file-added", (file) => {
      if (file.meta.process === undefined) {
        u.setFileMeta(file.id, { filename: file.name ?? "upload", filetype: file.type || "", process: processRef.current ? "true" : "false" });
      }
      // A new row shows at once, with its process box as chosen.
      follow.flush();
    });
    u.on("upload-progress", (file, progress) => {
      if (!file) return;
      let m = meters.current.get(file.id);
      if (!m) meters.current.set(file.id, (m = new RateMeter()));
      m.add(performance.now(), progress.bytesUploaded ?? 0);
    });
    u.on("upload-pause", (file) => file && meters.current.get(file.id)?.reset());
    u.on("upload-retry", (file) => {
      meters.current.get(file.id)?.reset();
      setErrors((e) => {
        const { [file.id]: _, ...rest } = e;
        return rest;
      });
    });
    u.on("restriction-failed", (file, error) => {
      setNotices((n) => [...n.slice(-4), `${file?.name ?? "A file"}: ${error.message}`]);
    });
    u.on("upload-error", (file, error, response) => {
      if (!file) return;
      const xhr = (response?.body as { xhr?: XMLHttpRequest } | undefined)?.xhr;
      const detail = uploadErrorDetail(error as never, xhr ?? null);
      const status = (error as { originalResponse?: { getStatus(): number } | null }).originalResponse?.getStatus() ?? xhr?.status ?? 0;
      setErrors((e) => ({ ...e, [file.id]: { detail, status } }));
      u.setFileState(file.id, { error: detail });
    });
    u.on("upload-success", (file, response) => {
      if (!file) return;
      const xhr = (response.body as { xhr?: XMLHttpRequest } | undefined)?.xhr;
      const process = file.meta.process !== "false";
      // Quota figures and the files list changed.
      void client.invalidateQueries({ queryKey: ["me"] });
      void client.invalidateQueries({ queryKey: ["files"] });
      const fileId = xhr?.getResponseHeader?.("Sluice-File-Id") ?? null;
      const jobId = xhr?.getResponseHeader?.("Sluice-Job-Id") ?? null;
      if (fileId) {
        remember(file.id, { fileId, jobId, process });
        return;
      }
      // The answer carrying the ids was lost (e.g. the last PATCH before a reload): ask the session.
      const uploadId = tusUploadId(response.uploadURL);
      remember(file.id, { fileId: null, jobId: null, process });
      if (!uploadId) return;
      api<UploadSession>(`/api/v1/uploads/${uploadId}`)
        .then(async (s) => {
          const rec = s.file_id ? await api<FileRecord>(`/api/v1/files/${s.file_id}`) : null;
          remember(file.id, { fileId: s.file_id, jobId: rec?.job_id ?? null, process });
        })
        .catch((e: Error) => remember(file.id, { fileId: null, jobId: null, process, lookupError: e.message }));
    });
    u.on("file-removed", (file) => {
      meters.current.delete(file.id);
      remember(file.id, null);
    });
    setUppy(u);
    setFiles(u.getFiles());
    return () => {
      follow.stop();
      u.destroy();
      setUppy(null);
    };
  }, [apiKey, me?.owner_id, config, remember, client]);

  const picker = useRef<HTMLInputElement>(null);
  const addPicked = (list: FileList | null) => {
    if (!uppy || !list) return;
    for (const f of Array.from(list)) {
      try {
        // A file restored without its bytes (a "ghost" after a reload) takes them back here and resumes.
        uppy.addFile({ name: f.name, type: f.type, data: f, source: "Local" });
      } catch {
        /* restriction-failed already reported it */
      }
    }
    if (picker.current) picker.current.value = "";
  };
  const setProcess = (file: SFile, on: boolean) => {
    if (!uppy) return;
    uppy.setFileMeta(file.id, { process: on ? "true" : "false" });
    // Re-render in this event, not on the next frame: a controlled checkbox must not flip back.
    setFiles(uppy.getFiles());
  };
  const ghosts = files.filter((f) => f.isGhost).length;
  const fresh = files.filter((f) => !f.progress.uploadStarted).length;
  const start = () => {
    if (!uppy) return;
    // After a reload Golden Retriever holds the unfinished uploads: confirming resumes them (tus HEAD, then PATCH from the offset).
    if (uppy.getState().recoveredState) uppy.emit("restore-confirmed");
    else uppy.upload().catch(() => {});
  };
  const uploading = files.some((f) => f.progress.uploadStarted && !f.progress.uploadComplete && !f.error);

  return (
    <>
      <div className="upload-options">
        <button type="button" onClick={() => picker.current?.click()} disabled={!uppy} data-testid="choose-files">
          Choose files…
        </button>
        <input
          ref={picker}
          type="file"
          multiple
          className="visually-hidden"
          tabIndex={-1}
          aria-label="Files to upload"
          accept={config.accepted_types.join(",")}
          onChange={(e) => addPicked(e.target.files)}
          data-testid="file-input"
        />
        <label className="check">
          <input type="checkbox" checked={processNew} onChange={(e) => setProcessNew(e.target.checked)} data-testid="process-default" />
          Process new files into tables
        </label>
        <Quota />
        <span className="muted small">
          Chunks of {formatBytes(tusChunkSize(config.part_size))}
          {config.max_upload_bytes > 0 ? ` · at most ${formatBytes(config.max_upload_bytes)} a file` : ""} · accepted:{" "}
          {config.accepted_types.filter((t) => t.startsWith(".")).join(" ")}
        </span>
      </div>
      <div ref={target} className="dashboard" data-testid="uppy-dashboard" />
      {notices.length ? (
        <div className="alert alert-error" role="alert" data-testid="restriction-error">
          <ul>
            {notices.map((n, i) => (
              <li key={i}>{n}</li>
            ))}
          </ul>
          <button type="button" className="link" onClick={() => setNotices([])}>
            Dismiss
          </button>
        </div>
      ) : null}
      {recovered ? (
        <p className="alert alert-info" role="status" data-testid="restored-notice">
          {ghosts
            ? `Unfinished uploads were restored. Choose ${ghosts === 1 ? "the file marked “needs file”" : `the ${ghosts} files marked “needs file”`} again (same file), then resume: only the missing bytes are sent.`
            : "Unfinished uploads were restored: resume them to send the missing bytes."}
        </p>
      ) : null}
      {files.length ? (
        <section aria-labelledby="transfers-title" className="card">
          <div className="row-between">
            <h2 id="transfers-title">Transfers</h2>
            <div className="actions">
              <button type="button" className="primary" onClick={start} disabled={recovered ? ghosts > 0 : fresh === 0} data-testid="upload-start">
                {recovered ? "Resume uploads" : `Upload ${fresh || ""} file(s)`}
              </button>
              {uploading ? (
                <button type="button" onClick={() => uppy?.pauseAll()} data-testid="pause-all">
                  Pause all
                </button>
              ) : null}
              <button type="button" onClick={() => uppy?.retryAll().catch(() => {})} disabled={!files.some((f) => f.error)} data-testid="retry-all">
                Retry failed
              </button>
            </div>
          </div>
          <div className="table-wrap">
            <table className="table" data-testid="transfers">
              <thead>
                <tr>
                  <th scope="col">File</th>
                  <th scope="col">Size</th>
                  <th scope="col">Process</th>
                  <th scope="col" className="wide">Progress</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {files.map((f) => (
                  <TransferRow
                    key={f.id}
                    file={f}
                    meter={meters.current.get(f.id)}
                    error={errors[f.id]?.detail ?? (typeof f.error === "string" ? f.error : null)}
                    permanent={PERMANENT.has(errors[f.id]?.status ?? 0)}
                    stored={results[f.id]}
                    onProcess={(on) => setProcess(f, on)}
                    onPause={() => uppy?.pauseResume(f.id)}
                    onRetry={() => uppy?.retryUpload(f.id).catch(() => {})}
                    onRemove={() => uppy?.removeFile(f.id)}
                  />
                ))}
              </tbody>
            </table>
          </div>
        </section>
      ) : null}
    </>
  );
}

function TransferRow({
  file,
  meter,
  error,
  stored,
  permanent,
  onProcess,
  onPause,
  onRetry,
  onRemove,
}: {
  file: SFile;
  meter: RateMeter | undefined;
  error: string | null;
  stored: Stored | undefined;
  permanent: boolean;
  onProcess: (on: boolean) => void;
  onPause: () => void;
  onRetry: () => void;
  onRemove: () => void;
}) {
  const p = file.progress;
  const total = p.bytesTotal ?? file.size ?? 0;
  const sent = p.bytesUploaded || 0;
  const started = !!p.uploadStarted;
  const complete = !!p.uploadComplete;
  const rate = started && !complete && !file.isPaused ? meter?.rate() ?? null : null;
  const eta = etaSeconds(sent, total, rate);
  const process = file.meta.process !== "false";
  const state = error ? "failed" : complete ? "stored" : file.isGhost ? "needs file" : file.isPaused ? "paused" : started ? "uploading" : "waiting";
  const name = file.name ?? "file";

  return (
    <tr data-testid="transfer-row" data-file-name={name} data-state={state}>
      <th scope="row" className="filename">
        {name}
        {file.isGhost ? <div className="muted small">Choose this file again to resume its upload where it stopped.</div> : null}
      </th>
      <td>{formatBytes(total || null)}</td>
      <td>
        <label className="check">
          <input type="checkbox" checked={process} disabled={started} onChange={(e) => onProcess(e.target.checked)} aria-label={`Process ${name} into a table`} data-testid="transfer-process" />
          {process ? "yes" : "no"}
        </label>
      </td>
      <td className="wide">
        {complete && stored ? (
          <StoredCell stored={stored} />
        ) : (
          <div className="transfer-progress">
            <div className="job-live-head">
              <Badge value={state} testid="transfer-state" />
              <ProgressBar value={total ? (100 * sent) / total : 0} label={`Upload progress of ${name}`} testid="upload-progress" />
              <span data-testid="upload-percent">{formatPercent(total ? (100 * sent) / total : 0, 1)}</span>
            </div>
            <div className="job-live-figures">
              <span data-testid="upload-bytes">
                {formatBytes(sent)} of {formatBytes(total)}
              </span>
              {state === "uploading" ? <span data-testid="upload-speed">{formatByteRate(rate)}</span> : null}
              {state === "uploading" ? <span data-testid="upload-eta">ETA {formatDuration(eta)}</span> : null}
              {complete && !stored ? <span className="muted">stored; looking up the file…</span> : null}
            </div>
            {error ? (
              <p className="error-text" role="alert" data-testid="upload-error">
                {error}
              </p>
            ) : null}
          </div>
        )}
      </td>
      <td className="actions">
        {started && !complete && !error && !file.isGhost ? (
          <button type="button" onClick={onPause} data-testid="transfer-pause" aria-label={`${file.isPaused ? "Resume" : "Pause"} ${name}`}>
            {file.isPaused ? "Resume" : "Pause"}
          </button>
        ) : null}
        {error && !permanent ? (
          <button type="button" onClick={onRetry} data-testid="transfer-retry" aria-label={`Retry ${name}`}>
            Retry
          </button>
        ) : null}
        <button type="button" onClick={onRemove} data-testid="transfer-cancel" aria-label={`${complete ? "Remove" : "Cancel"} ${name}`}>
          {complete ? "Remove" : "Cancel"}
        </button>
      </td>
    </tr>
  );
}

function StoredCell({ stored }: { stored: Stored }) {
  if (!stored.fileId) {
    return stored.lookupError ? (
      <ErrorBox error={new Error(`Stored, but its file record could not be read: ${stored.lookupError}`)} />
    ) : (
      <span className="muted">Stored; looking up the file…</span>
    );
  }
  const link = (
    <Link to={`/files/${stored.fileId}`} data-testid="file-link">
      Open the file
    </Link>
  );
  if (!stored.process || !stored.jobId) {
    return (
      <div data-testid="stored-unprocessed">
        <Badge value="stored" /> {stored.process ? "No processing job (not a table file)." : "Not processed."} {link}
      </div>
    );
  }
  return <StoredJob jobId={stored.jobId} link={link} />;
}

function StoredJob({ jobId, link }: { jobId: string; link: ReactNode }) {
  const p = useJobStream(jobId);
  const [confirm, setConfirm] = useState(false);
  const cancel = useMutation({
    mutationFn: () => api<JobRecord>(`/api/v1/jobs/${jobId}/cancel`, { method: "POST" }),
    onSuccess: () => setConfirm(false),
  });
  return (
    <div>
      <JobLive p={p} />
      <div className="small actions">
        {p.state === "completed" ? <strong>Done ·</strong> : null}
        {link}
        {!isTerminal(p.state) ? (
          <button type="button" className="link" onClick={() => setConfirm(true)} disabled={cancel.isSuccess} data-testid="job-cancel">
            {cancel.isSuccess ? "Cancelling…" : "Cancel processing"}
          </button>
        ) : null}
      </div>
      <ErrorBox error={cancel.error} />
      <ConfirmDialog
        open={confirm}
        title="Cancel processing?"
        confirmLabel="Cancel processing"
        busy={cancel.isPending}
        onCancel={() => setConfirm(false)}
        onConfirm={() => cancel.mutate()}
        testid="cancel-dialog"
      >
        <p>The worker stops within one window and drops the partial table. The file stays stored; you can process it again from its page.</p>
      </ConfirmDialog>
    </div>
  );
}

/** What the key's owner may still store (GET /api/v1/me quotas); nothing when unlimited. */
function Quota() {
  const { me } = useAuth();
  const bytes = me?.quotas?.bytes;
  const files = me?.quotas?.files;
  const parts: string[] = [];
  if (bytes?.limit != null) parts.push(`${formatBytes(bytes.used)} of ${formatBytes(bytes.limit)} stored`);
  if (files?.limit != null) parts.push(`${files.used.toLocaleString("en-US")} of ${files.limit.toLocaleString("en-US")} files`);
  if (!parts.length) return null;
  const full = (bytes?.limit != null && bytes.used >= bytes.limit) || (files?.limit != null && files.used >= files.limit);
  return (
    <span className={full ? "error-text small" : "muted small"} data-testid="quota">
      Quota: {parts.join(" · ")}
      {full ? " — full: delete files to upload more" : ""}
    </span>
  );
}
