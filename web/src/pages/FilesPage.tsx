import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useSearchParams } from "react-router";
import { api, ApiError, qs } from "../lib/api";
import { formatBytes, formatCount, formatDateTime } from "../lib/format";
import { downloadFile } from "../lib/download";
import type { FileRecord, Page } from "../lib/types";
import { usePageTitle } from "../usePageTitle";
import { Badge, ConfirmDialog, ErrorBox, Loading, Pager } from "../components/ui";

const LIMIT = 25;
/** The list route's limit on `q`. */
const MAX_QUERY_CHARS = 200;
export const STATUSES = ["", "stored", "receiving", "failed", "deleted"];
export const KINDS = ["", "csv", "tsv", "xlsx", "other"];

export function FilesPage() {
  usePageTitle("Files");
  const [params, setParams] = useSearchParams();
  const status = params.get("status") ?? "";
  const kind = params.get("kind") ?? "";
  const q = params.get("q") ?? "";
  const offset = Math.max(0, Number(params.get("offset") ?? 0) || 0);
  const [search, setSearch] = useState(q);
  const [toDelete, setToDelete] = useState<FileRecord | null>(null);
  const [downloadError, setDownloadError] = useState<string | null>(null);
  const client = useQueryClient();

  const update = (patch: Record<string, string>) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(patch)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    if (!("offset" in patch)) next.delete("offset");
    setParams(next);
  };

  const list = useQuery({
    queryKey: ["files", status, kind, q, offset],
    queryFn: () => api<Page<FileRecord>>(`/api/v1/files${qs({ status, kind, q, offset, limit: LIMIT })}`),
    placeholderData: keepPreviousData,
    refetchInterval: (query) => (query.state.data?.items.some((f) => f.status === "receiving" || f.job_state === "processing" || f.job_state === "pending") ? 5000 : false),
  });

  const del = useMutation({
    mutationFn: (f: FileRecord) => api<void>(`/api/v1/files/${f.id}`, { method: "DELETE" }),
    onSuccess: () => {
      setToDelete(null);
      client.invalidateQueries({ queryKey: ["files"] });
    },
  });

  return (
    <section className="page" data-testid="files-page">
      <h1>Files</h1>
      <form
        className="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          update({ q: search.trim() });
        }}
      >
        <label>
          Name
          <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="part of the file name" maxLength={MAX_QUERY_CHARS} data-testid="files-search" />
        </label>
        <button type="submit" data-testid="files-search-submit">
          Search
        </button>
        <label>
          Status
          <select value={status} onChange={(e) => update({ status: e.target.value })} data-testid="files-status">
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s || "all but deleted"}
              </option>
            ))}
          </select>
        </label>
        <label>
          Kind
          <select value={kind} onChange={(e) => update({ kind: e.target.value })} data-testid="files-kind">
            {KINDS.map((k) => (
              <option key={k} value={k}>
                {k || "any"}
              </option>
            ))}
          </select>
        </label>
        {status || kind || q ? (
          <button
            type="button"
            className="link"
            onClick={() => {
              setSearch("");
              setParams(new URLSearchParams());
            }}
          >
            Clear filters
          </button>
        ) : null}
      </form>
      <ErrorBox error={list.error} />
      <ErrorBox error={del.error} testid="delete-error" />
      <ErrorBox error={downloadError ? new Error(downloadError) : null} testid="download-error" />
      {list.isPending ? <Loading what="files" /> : null}
      {list.data ? (
        <>
          {list.data.items.length === 0 ? (
            <p data-testid="files-empty">
              {status || kind || q ? "No file matches these filters." : <>No files yet. <Link to="/">Upload some</Link>.</>}
            </p>
          ) : (
            <div className="table-wrap">
              <table className="table" data-testid="files-table">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col" className="num">Size</th>
                    <th scope="col">Kind</th>
                    <th scope="col">Status</th>
                    <th scope="col" className="num">Rows stored</th>
                    <th scope="col" className="num">Rejected</th>
                    <th scope="col">Uploaded at</th>
                    <th scope="col">Actions</th>
                  </tr>
                </thead>
                <tbody>
                  {list.data.items.map((f) => (
                    <tr key={f.id} data-testid="file-row" data-file-id={f.id} data-file-name={f.filename}>
                      <th scope="row" className="filename">
                        <Link to={`/files/${f.id}`} data-testid="file-row-link">
                          {f.filename}
                        </Link>
                        {f.error ? <div className="error-text small">{f.error}</div> : null}
                      </th>
                      <td className="num">{formatBytes(f.size)}</td>
                      <td>{f.kind}</td>
                      <td>
                        <Badge value={f.status} testid="file-status" />
                        {f.job_state && f.job_state !== "completed" ? <Badge value={f.job_state} /> : null}
                      </td>
                      <td className="num" data-testid="file-rows">
                        {formatCount(f.rows_ok)}
                      </td>
                      <td className="num">{f.rows_rejected ? <span className="warn">{formatCount(f.rows_rejected)}</span> : formatCount(f.rows_rejected)}</td>
                      <td>{formatDateTime(f.created_at)}</td>
                      <td className="actions">
                        {f.status === "stored" ? (
                          <button type="button" onClick={() => downloadFile(f).catch((e: Error) => setDownloadError(`${f.filename}: ${e.message}`))} data-testid="file-download" aria-label={`Download ${f.filename}`}>
                            Download
                          </button>
                        ) : null}
                        {f.status !== "deleted" ? (
                          <button type="button" className="danger" onClick={() => setToDelete(f)} data-testid="file-delete" aria-label={`Delete ${f.filename}`}>
                            Delete
                          </button>
                        ) : null}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <Pager offset={offset} limit={LIMIT} total={list.data.total} onChange={(o) => update({ offset: o ? String(o) : "" })} label="Files pages" />
        </>
      ) : null}
      <ConfirmDialog
        open={!!toDelete}
        title="Delete this file?"
        confirmLabel="Delete"
        busy={del.isPending}
        onCancel={() => {
          setToDelete(null);
          del.reset();
        }}
        onConfirm={() => toDelete && del.mutate(toDelete)}
      >
        <p>
          <strong>{toDelete?.filename}</strong> ({formatBytes(toDelete?.size)}) and its table are deleted. This cannot be undone.
        </p>
        {del.error instanceof ApiError ? <p className="error-text">{del.error.message}</p> : null}
      </ConfirmDialog>
    </section>
  );
}
