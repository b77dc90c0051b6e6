import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api, ApiError, qs } from "../lib/api";
import { downloadFile } from "../lib/download";
import { formatBytes, formatCount, formatDateTime, formatDuration, formatRowRate, secondsBetween } from "../lib/format";
import { isTerminal } from "../lib/jobProgress";
import { readingOf, type Source } from "../lib/reading";
import { buildOptions, CAST_TYPES, type ColumnChoice, type ReprocessForm } from "../lib/reprocess";
import type { FileRecord, JobRecord, Page, RejectPage, RowsPage } from "../lib/types";
import { useJobStream } from "../useJobStream";
import { usePageTitle } from "../usePageTitle";
import { Badge, ConfirmDialog, ErrorBox, JobLive, Loading, Pager } from "../components/ui";

const ROWS_LIMIT = 50;
const REJECTS_LIMIT = 50;
const JOBS_LIMIT = 20;

export function FilePage() {
  const { fileId = "" } = useParams();
  const client = useQueryClient();
  const navigate = useNavigate();
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [downloadError, setDownloadError] = useState<string | null>(null);

  const file = useQuery({
    queryKey: ["file", fileId],
    queryFn: () => api<FileRecord>(`/api/v1/files/${fileId}`),
    refetchInterval: (q) => (q.state.data && (q.state.data.status === "receiving" || (q.state.data.job_state && !isTerminal(q.state.data.job_state))) ? 5000 : false),
  });
  const [jobsOffset, setJobsOffset] = useState(0);
  const jobs = useQuery({
    queryKey: ["file-jobs", fileId, jobsOffset],
    queryFn: async () => {
      const page = await api<Page<JobRecord>>(`/api/v1/jobs${qs({ file_id: fileId, offset: jobsOffset, limit: JOBS_LIMIT })}`);
      // A server older than the file filter answers with everyone's jobs: never show another file's.
      return { ...page, items: page.items.filter((j) => j.file_id === fileId) };
    },
    placeholderData: keepPreviousData,
  });
  const del = useMutation({
    mutationFn: () => api<void>(`/api/v1/files/${fileId}`, { method: "DELETE" }),
    onSuccess: () => {
      client.invalidateQueries({ queryKey: ["files"] });
      navigate("/files");
    },
  });

  // The record names its latest job; read it by id, whatever page of the history is shown.
  const latestId = file.data?.job_id ?? null;
  const latest = useQuery({
    queryKey: ["job", latestId],
    queryFn: () => api<JobRecord>(`/api/v1/jobs/${latestId}`),
    enabled: !!latestId,
  });
  usePageTitle(file.data?.filename ?? "File");

  const refresh = () => {
    client.invalidateQueries({ queryKey: ["file", fileId] });
    client.invalidateQueries({ queryKey: ["file-jobs", fileId] });
    client.invalidateQueries({ queryKey: ["job"] });
    client.invalidateQueries({ queryKey: ["rows", fileId] });
    client.invalidateQueries({ queryKey: ["rejects"] });
    client.invalidateQueries({ queryKey: ["files"] });
  };

  if (file.isPending) return <Loading what="the file" />;
  if (file.isError)
    return (
      <section className="page" data-testid="file-page">
        <p>
          <Link to="/files">← Files</Link>
        </p>
        <ErrorBox error={file.error} />
      </section>
    );
  const f = file.data;
  const jobList = jobs.data?.items ?? [];
  const latestJobId = f.job_id ?? (jobsOffset === 0 ? jobList[0]?.id : null) ?? null;
  const latestJob = (latest.data?.id === latestJobId ? latest.data : null) ?? jobList.find((j) => j.id === latestJobId) ?? null;
  const active = f.job_state === "pending" || f.job_state === "processing";

  return (
    <section className="page" data-testid="file-page" data-file-id={f.id}>
      <p>
        <Link to="/files">← Files</Link>
      </p>
      <div className="row-between">
        <h1 className="filename" data-testid="file-name">
          {f.filename}
        </h1>
        <div className="actions">
          {f.status === "stored" ? (
            <button type="button" onClick={() => downloadFile(f).catch((e: Error) => setDownloadError(e.message))} data-testid="file-download">
              Download
            </button>
          ) : null}
          {f.status !== "deleted" ? (
            <button type="button" className="danger" onClick={() => setConfirmDelete(true)} data-testid="file-delete">
              Delete
            </button>
          ) : null}
        </div>
      </div>
      <ErrorBox error={downloadError ? new Error(downloadError) : null} />
      <div className="grid-2">
        <FileRecordCard f={f} job={latestJob} />
        <div className="card">
          <h2>Processing</h2>
          {active && f.job_id ? (
            <ActiveJob jobId={f.job_id} onEnd={refresh} />
          ) : latestJob ? (
            <JobSummary job={latestJob} />
          ) : f.job_state ? (
            <p>
              Latest job: <Badge value={f.job_state} /> · {formatCount(f.rows_ok)} rows stored, {formatCount(f.rows_rejected)} rejected
            </p>
          ) : (
            <p className="muted">{f.process ? "No processing job." : "Uploaded without processing."}</p>
          )}
          {f.estimated_processing_s ? <p className="muted small">Processing should take about {formatDuration(f.estimated_processing_s)}.</p> : null}
        </div>
      </div>
      <JobHistory
        jobs={jobList}
        total={jobs.data?.total ?? 0}
        offset={jobsOffset}
        onPage={setJobsOffset}
        loading={jobs.isPending}
        error={jobs.error}
        currentId={latestJobId}
      />
      {f.dataset_table || f.job_state === "completed" ? <Preview fileId={f.id} /> : null}
      {latestJobId && (f.rows_rejected ?? latestJob?.rows_rejected ?? 0) > 0 ? <Rejects jobId={latestJobId} /> : null}
      {f.status === "stored" && (f.kind === "csv" || f.kind === "tsv" || f.kind === "xlsx") ? (
        <Reprocess file={f} disabled={active} onQueued={refresh} />
      ) : null}
      <ConfirmDialog
        open={confirmDelete}
        title="Delete this file?"
        confirmLabel="Delete"
        busy={del.isPending}
        onCancel={() => setConfirmDelete(false)}
        onConfirm={() => del.mutate()}
      >
        <p>
          <strong>{f.filename}</strong> ({formatBytes(f.size)}) and its table are deleted. This cannot be undone.
        </p>
        {del.error ? <p className="error-text">{del.error.message}</p> : null}
      </ConfirmDialog>
    </section>
  );
}

function FileRecordCard({ f, job }: { f: FileRecord; job: JobRecord | null }) {
  const read = readingOf(f, job);
  const showDelim = (d: string) => (d === "\t" ? "tab" : d === " " ? "space" : `"${d}"`);
  const how = (source: Source) => (source === "detected" ? <span className="muted"> · detected</span> : source === "given" ? <span className="muted"> · given</span> : null);
  return (
    <div className="card" data-testid="file-record">
      <h2>Record</h2>
      <dl className="dl">
        <dt>Status</dt>
        <dd>
          <Badge value={f.status} testid="file-status" />
          {f.error ? <div className="error-text">{f.error}</div> : null}
        </dd>
        <dt>Kind</dt>
        <dd>
          {f.kind}
          {f.content_type ? <span className="muted"> · {f.content_type}</span> : null}
        </dd>
        <dt>Size</dt>
        <dd data-testid="file-size">
          {formatBytes(f.size)} <span className="muted">({formatCount(f.size)} bytes)</span>
        </dd>
        <dt>SHA-256</dt>
        <dd>
          <code className="hash" data-testid="file-sha256">
            {f.sha256 ?? "–"}
          </code>
        </dd>
        {f.original_filename !== f.filename ? (
          <>
            <dt>Sent as</dt>
            <dd>{f.original_filename}</dd>
          </>
        ) : null}
        <dt>Uploaded at</dt>
        <dd>{formatDateTime(f.created_at)}</dd>
        <dt>Stored at</dt>
        <dd>
          {formatDateTime(f.stored_at)}
          {f.duration_ms != null ? (
            <span className="muted">
              {" "}
              · upload took {formatDuration(f.duration_ms / 1000)}
              {f.duration_ms > 0 ? ` (${formatBytes((f.size / f.duration_ms) * 1000)}/s)` : ""}
            </span>
          ) : null}
        </dd>
        <dt>Encoding</dt>
        <dd data-testid="file-encoding" data-source={read.encoding.source}>
          {read.encoding.value ?? <span className="muted">detected by the worker</span>}
          {read.encoding.value ? how(read.encoding.source) : null}
        </dd>
        {f.kind !== "xlsx" ? (
          <>
            <dt>Delimiter</dt>
            <dd data-testid="file-delimiter" data-source={read.delimiter.source}>
              {read.delimiter.value ? showDelim(read.delimiter.value) : <span className="muted">detected by the worker</span>}
              {read.delimiter.value ? how(read.delimiter.source) : null}
            </dd>
          </>
        ) : null}
        {read.header.value != null ? (
          <>
            <dt>Header row</dt>
            <dd data-testid="file-header" data-source={read.header.source}>
              {read.header.value ? "yes" : "no"}
              {how(read.header.source)}
            </dd>
          </>
        ) : null}
        {read.sheet.value ? (
          <>
            <dt>Sheet</dt>
            <dd data-testid="file-sheet" data-source={read.sheet.source}>
              {read.sheet.value}
              {how(read.sheet.source)}
            </dd>
          </>
        ) : null}
        <dt>Table</dt>
        <dd>
          <code data-testid="file-table">{f.dataset_table ?? "–"}</code>
        </dd>
        <dt>Rows</dt>
        <dd>
          <span data-testid="file-rows-ok">{formatCount(f.rows_ok)}</span> stored ·{" "}
          <span data-testid="file-rows-rejected">{formatCount(f.rows_rejected)}</span> rejected
        </dd>
        <dt>File id</dt>
        <dd>
          <code>{f.id}</code>
        </dd>
      </dl>
    </div>
  );
}

function ActiveJob({ jobId, onEnd }: { jobId: string; onEnd: () => void }) {
  const p = useJobStream(jobId, onEnd);
  const [confirm, setConfirm] = useState(false);
  const cancel = useMutation({
    mutationFn: () => api<JobRecord>(`/api/v1/jobs/${jobId}/cancel`, { method: "POST" }),
    onSuccess: () => setConfirm(false),
  });
  return (
    <div data-testid="active-job" data-job-id={jobId}>
      <JobLive p={p} />
      {!isTerminal(p.state) ? (
        <button type="button" className="danger" onClick={() => setConfirm(true)} disabled={cancel.isSuccess} data-testid="job-cancel">
          {cancel.isSuccess ? "Cancelling…" : "Cancel the job"}
        </button>
      ) : null}
      <ErrorBox error={cancel.error} />
      <ConfirmDialog
        open={confirm}
        title="Cancel this job?"
        confirmLabel="Cancel the job"
        busy={cancel.isPending}
        onCancel={() => setConfirm(false)}
        onConfirm={() => cancel.mutate()}
        testid="cancel-dialog"
      >
        <p>The worker stops within one window and drops the partial table. The file stays; you can process it again.</p>
      </ConfirmDialog>
    </div>
  );
}

function JobSummary({ job }: { job: JobRecord }) {
  return (
    <div data-testid="job-summary" data-state={job.state}>
      <p>
        <Badge value={job.state} testid="job-state" /> {formatCount(job.rows_ok)} rows stored · {formatCount(job.rows_rejected)} rejected
        {job.started_at ? ` · took ${formatDuration(secondsBetween(job.started_at, job.finished_at))}` : ""}
      </p>
      {job.error ? <p className="error-text" data-testid="job-error">{job.error}</p> : null}
      {job.widenings?.length ? (
        <details>
          <summary>{job.widenings.length} column type(s) widened while loading</summary>
          <ul>
            {job.widenings.map((w, i) => (
              <li key={i}>
                {w.column}: {w.from_type} → {w.to_type}
                {w.row_number ? ` at row ${formatCount(w.row_number)}` : ""}
              </li>
            ))}
          </ul>
        </details>
      ) : null}
    </div>
  );
}

function JobHistory({
  jobs,
  total,
  offset,
  onPage,
  loading,
  error,
  currentId,
}: {
  jobs: JobRecord[];
  total: number;
  offset: number;
  onPage: (offset: number) => void;
  loading: boolean;
  error: unknown;
  currentId: string | null;
}) {
  return (
    <section className="card" aria-labelledby="jobs-title">
      <h2 id="jobs-title">Job history</h2>
      <ErrorBox error={error} />
      {loading ? <Loading what="jobs" /> : null}
      {!loading && jobs.length === 0 ? <p className="muted">No jobs in the retained history.</p> : null}
      {jobs.length ? (
        <div className="table-wrap">
          <table className="table" data-testid="job-history">
            <thead>
              <tr>
                <th scope="col">Created</th>
                <th scope="col">State</th>
                <th scope="col" className="num">Rows</th>
                <th scope="col" className="num">Rejected</th>
                <th scope="col" className="num">Rate</th>
                <th scope="col">Took</th>
                <th scope="col">Options</th>
                <th scope="col">Error</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.id} data-testid="job-row" data-job-id={j.id} aria-current={j.id === currentId ? "true" : undefined}>
                  <td>{formatDateTime(j.created_at)}</td>
                  <td>
                    <Badge value={j.state} />
                    {j.attempts > 1 ? <span className="muted small"> · {j.attempts} attempts</span> : null}
                  </td>
                  <td className="num">{formatCount(j.rows_ok)}</td>
                  <td className="num">{formatCount(j.rows_rejected)}</td>
                  <td className="num">{formatRowRate(j.rate)}</td>
                  <td>{j.started_at ? formatDuration(secondsBetween(j.started_at, j.finished_at)) : "–"}</td>
                  <td>
                    <code className="small" title={JSON.stringify(j.options)}>
                      {describeOptions(j.options)}
                    </code>
                  </td>
                  <td className="error-text small">{j.error ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {total > JOBS_LIMIT ? <Pager offset={offset} limit={JOBS_LIMIT} total={total} onChange={onPage} label="Job history pages" testid="jobs-pager" /> : null}
    </section>
  );
}

/** Options the server fills in from its settings: shown in the tooltip only. */
const TUNING = new Set(["window_rows", "max_concurrency", "timeout_s", "max_retries"]);

/** The options a job was given, without the ones left to their defaults. */
function describeOptions(options: Record<string, unknown> | null | undefined): string {
  const set = Object.entries(options ?? {}).filter(
    ([k, v]) =>
      !TUNING.has(k) &&
      !(k === "strict_types" && v === false) &&
      !(k === "yes_no_boolean" && v === true) && v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0) && !(typeof v === "object" && !Array.isArray(v) && Object.keys(v as object).length === 0),
  );
  if (!set.length) return "defaults";
  return set.map(([k, v]) => `${k}=${typeof v === "string" ? JSON.stringify(v) : JSON.stringify(v)}`).join(" ");
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function Preview({ fileId }: { fileId: string }) {
  const [offset, setOffset] = useState(0);
  const rows = useQuery({
    queryKey: ["rows", fileId, offset],
    queryFn: () => api<RowsPage>(`/api/v1/files/${fileId}/rows${qs({ offset, limit: ROWS_LIMIT })}`),
    placeholderData: keepPreviousData,
  });
  return (
    <section className="card" aria-labelledby="preview-title" data-testid="preview">
      <h2 id="preview-title">
        Table preview {rows.data ? <span className="muted small">· <code>{rows.data.table}</code> · <span data-testid="preview-total">{formatCount(rows.data.total)}</span> rows</span> : null}
      </h2>
      <ErrorBox error={rows.error} />
      {rows.isPending ? <Loading what="rows" /> : null}
      {rows.data ? (
        <>
          <div className="table-wrap preview-wrap">
            <table className="table dense" data-testid="preview-table">
              <thead>
                <tr>
                  <th scope="col" className="num">Row</th>
                  {rows.data.columns.map((c) => (
                    <th scope="col" key={c.name} data-testid="preview-column">
                      {c.name}
                      <div className="coltype">{c.type}</div>
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {rows.data.rows.map((r, i) => (
                  <tr key={rows.data.row_numbers[i] ?? i} data-testid="preview-row">
                    <td className="num muted">{rows.data.row_numbers[i]}</td>
                    {r.map((v, j) => (
                      <td key={j} className={v === null ? "null" : undefined}>
                        {v === null ? "NULL" : cell(v)}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager offset={offset} limit={ROWS_LIMIT} total={rows.data.total} onChange={setOffset} label="Table rows pages" testid="preview-pager" />
        </>
      ) : null}
    </section>
  );
}

function Rejects({ jobId }: { jobId: string }) {
  const [offset, setOffset] = useState(0);
  const rejects = useQuery({
    queryKey: ["rejects", jobId, offset],
    queryFn: () => api<RejectPage>(`/api/v1/jobs/${jobId}/rejects${qs({ offset, limit: REJECTS_LIMIT })}`),
    placeholderData: keepPreviousData,
  });
  return (
    <section className="card" aria-labelledby="rejects-title" data-testid="rejects">
      <h2 id="rejects-title">
        Rejected rows {rejects.data ? <span className="muted small">· <span data-testid="rejects-total">{formatCount(rejects.data.total)}</span></span> : null}
      </h2>
      <ErrorBox error={rejects.error} />
      {rejects.data ? (
        <>
          <div className="table-wrap">
            <table className="table dense" data-testid="rejects-table">
              <thead>
                <tr>
                  <th scope="col" className="num">Row</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Raw text</th>
                </tr>
              </thead>
              <tbody>
                {rejects.data.items.map((r) => (
                  <tr key={r.row_number} data-testid="reject-row">
                    <td className="num">{formatCount(r.row_number)}</td>
                    <td>{r.reason}</td>
                    <td>
                      <code className="raw">{r.raw.length > 500 ? `${r.raw.slice(0, 500)}…` : r.raw}</code>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager offset={offset} limit={REJECTS_LIMIT} total={rejects.data.total} onChange={setOffset} label="Rejected rows pages" testid="rejects-pager" />
        </>
      ) : null}
    </section>
  );
}

function Reprocess({ file, disabled, onQueued }: { file: FileRecord; disabled: boolean; onQueued: () => void }) {
  const columns = useQuery({
    queryKey: ["rows", file.id, "columns"],
    queryFn: () => api<RowsPage>(`/api/v1/files/${file.id}/rows${qs({ offset: 0, limit: 1 })}`),
    enabled: !!file.dataset_table || file.job_state === "completed",
    retry: false,
  });
  const [form, setForm] = useState<ReprocessForm>({ delimiter: "", header: "", sheet: "", encoding: "", columns: [] });
  useEffect(() => {
    const cols = columns.data?.columns;
    if (cols) setForm((f) => ({ ...f, columns: cols.map<ColumnChoice>((c) => ({ name: c.name, keep: true, rename: "", cast: "" })) }));
  }, [columns.data]);
  const built = buildOptions(form);
  const queue = useMutation({
    mutationFn: () => api<{ batch_id: string; jobs: JobRecord[] }>("/api/v1/jobs", { method: "POST", body: { file_ids: [file.id], options: built.options } }),
    onSuccess: onQueued,
  });
  const setCol = (i: number, patch: Partial<ColumnChoice>) =>
    setForm((f) => ({ ...f, columns: f.columns.map((c, j) => (j === i ? { ...c, ...patch } : c)) }));
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!built.problems.length) queue.mutate();
  };
  const xlsx = file.kind === "xlsx";

  return (
    <section className="card" aria-labelledby="reprocess-title">
      <h2 id="reprocess-title">{file.job_id ? "Process again" : "Process into a table"}</h2>
      <form onSubmit={submit} data-testid="reprocess-form">
        <div className="filters">
          {!xlsx ? (
            <>
              <label>
                Delimiter
                <select value={form.delimiter} onChange={(e) => setForm({ ...form, delimiter: e.target.value })} data-testid="reprocess-delimiter">
                  <option value="">detect</option>
                  <option value=",">, comma</option>
                  <option value=";">; semicolon</option>
                  <option value="\t">tab</option>
                  <option value="|">| pipe</option>
                </select>
              </label>
              <label>
                Encoding
                <input value={form.encoding} onChange={(e) => setForm({ ...form, encoding: e.target.value })} placeholder="detect (e.g. utf-8, latin-1)" data-testid="reprocess-encoding" />
              </label>
            </>
          ) : (
            <label>
              Sheet
              <input value={form.sheet} onChange={(e) => setForm({ ...form, sheet: e.target.value })} placeholder="the first sheet" data-testid="reprocess-sheet" />
            </label>
          )}
          <label>
            Header row
            <select value={form.header} onChange={(e) => setForm({ ...form, header: e.target.value as ReprocessForm["header"] })} data-testid="reprocess-header">
              <option value="">detect</option>
              <option value="true">first row is the header</option>
              <option value="false">no header (col_1, col_2…)</option>
            </select>
          </label>
        </div>
        {form.columns.length ? (
          <fieldset>
            <legend>Columns (from the current table)</legend>
            <div className="table-wrap">
              <table className="table dense" data-testid="reprocess-columns">
                <thead>
                  <tr>
                    <th scope="col">Keep</th>
                    <th scope="col">Column</th>
                    <th scope="col">Rename to</th>
                    <th scope="col">Cast to</th>
                  </tr>
                </thead>
                <tbody>
                  {form.columns.map((c, i) => (
                    <tr key={c.name}>
                      <td>
                        <input type="checkbox" checked={c.keep} onChange={(e) => setCol(i, { keep: e.target.checked })} aria-label={`Keep ${c.name}`} />
                      </td>
                      <th scope="row">
                        <code>{c.name}</code> <span className="coltype">{columns.data?.columns[i]?.type}</span>
                      </th>
                      <td>
                        <input value={c.rename} disabled={!c.keep} onChange={(e) => setCol(i, { rename: e.target.value })} aria-label={`Rename ${c.name} to`} placeholder={c.name} />
                      </td>
                      <td>
                        <select value={c.cast} disabled={!c.keep} onChange={(e) => setCol(i, { cast: e.target.value })} aria-label={`Cast ${c.name} to`}>
                          <option value="">infer</option>
                          {CAST_TYPES.map((t) => (
                            <option key={t} value={t}>
                              {t}
                            </option>
                          ))}
                        </select>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </fieldset>
        ) : (
          <p className="muted small">Column choices appear once the file has a table.</p>
        )}
        {built.problems.length ? (
          <ul className="error-text" role="alert">
            {built.problems.map((p) => (
              <li key={p}>{p}</li>
            ))}
          </ul>
        ) : null}
        <ErrorBox error={queue.error} testid="reprocess-error" />
        {queue.isSuccess ? <p className="alert alert-info" role="status">Queued. Progress shows above.</p> : null}
        <div className="actions">
          <button type="submit" className="primary" disabled={disabled || queue.isPending || built.problems.length > 0} data-testid="reprocess-submit">
            {queue.isPending ? "Queuing…" : file.job_id ? "Process again" : "Process"}
          </button>
          {disabled ? <span className="muted small">A job is running for this file.</span> : null}
          <span className="muted small">The current table stays readable until the new job completes.</span>
        </div>
        {queue.error instanceof ApiError && queue.error.status === 409 ? <p className="muted small">Wait for the running job to end, or cancel it.</p> : null}
      </form>
    </section>
  );
}
