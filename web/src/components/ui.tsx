import { useEffect, useId, useRef, type ReactNode } from "react";
import { ApiError } from "../lib/api";
import { formatCount, formatDuration, formatPercent, formatRowRate } from "../lib/format";
import type { JobProgress } from "../lib/jobProgress";

export function ErrorBox({ error, testid = "error" }: { error: unknown; testid?: string }) {
  if (!error) return null;
  const status = error instanceof ApiError ? error.status : null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div className="alert alert-error" role="alert" data-testid={testid}>
      {status ? <strong>{status}: </strong> : null}
      {message}
    </div>
  );
}

export function Badge({ value, testid }: { value: string | null | undefined; testid?: string }) {
  const v = value ?? "–";
  return (
    <span className={`badge badge-${v.replace(/[^a-z_]/g, "")}`} data-testid={testid}>
      {v.replace("_", " ")}
    </span>
  );
}

export function ProgressBar({ value, label, testid }: { value: number; label: string; testid?: string }) {
  const v = Math.max(0, Math.min(100, value));
  return (
    <progress className="bar" max={100} value={v} aria-label={label} data-testid={testid}>
      {Math.round(v)} %
    </progress>
  );
}

export function Pager({
  offset,
  limit,
  total,
  onChange,
  label,
  testid = "pager",
}: {
  offset: number;
  limit: number;
  total: number;
  onChange: (offset: number) => void;
  label: string;
  testid?: string;
}) {
  const page = Math.floor(offset / limit) + 1;
  const pages = Math.max(1, Math.ceil(total / limit));
  return (
    <nav className="pager" aria-label={label} data-testid={testid}>
      <button type="button" onClick={() => onChange(0)} disabled={offset === 0} aria-label="First page">
        «
      </button>
      <button type="button" onClick={() => onChange(Math.max(0, offset - limit))} disabled={offset === 0} data-testid={`${testid}-prev`}>
        Previous
      </button>
      <span aria-live="polite">
        Page {page} of {pages} · {formatCount(total)} in all
      </span>
      <button type="button" onClick={() => onChange(offset + limit)} disabled={offset + limit >= total} data-testid={`${testid}-next`}>
        Next
      </button>
      <button type="button" onClick={() => onChange((pages - 1) * limit)} disabled={offset + limit >= total} aria-label="Last page">
        »
      </button>
    </nav>
  );
}

/** A modal confirmation built on <dialog>: focus is trapped and Escape cancels. */
export function ConfirmDialog({
  open,
  title,
  children,
  confirmLabel,
  onConfirm,
  onCancel,
  busy,
  testid = "confirm-dialog",
}: {
  open: boolean;
  title: string;
  children: ReactNode;
  confirmLabel: string;
  onConfirm: () => void;
  onCancel: () => void;
  busy?: boolean;
  testid?: string;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) {
      if (typeof d.showModal === "function") d.showModal();
      else d.setAttribute("open", "");
    }
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog
      ref={ref}
      className="dialog"
      aria-labelledby={titleId}
      data-testid={testid}
      onCancel={(e) => {
        e.preventDefault();
        onCancel();
      }}
    >
      <h2 id={titleId}>{title}</h2>
      <div>{children}</div>
      <div className="dialog-actions">
        <button type="button" onClick={onCancel} autoFocus data-testid={`${testid}-cancel`}>
          Keep it
        </button>
        <button type="button" className="danger" onClick={onConfirm} disabled={busy} data-testid={`${testid}-confirm`}>
          {busy ? "Working…" : confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

export function JobLive({ p, testid = "job-live" }: { p: JobProgress; testid?: string }) {
  return (
    <div className="job-live" data-testid={testid} data-state={p.state}>
      <div className="job-live-head">
        <Badge value={p.state} testid={`${testid}-state`} />
        <ProgressBar value={p.progress} label="Processing progress" testid={`${testid}-bar`} />
        <span>{formatPercent(p.progress)}</span>
      </div>
      <div className="job-live-figures">
        <span>
          <span data-testid={`${testid}-rows`}>{formatCount(p.rowsOk)}</span> rows
        </span>
        {p.rowsRejected > 0 ? (
          <span className="warn">
            <span data-testid={`${testid}-rejected`}>{formatCount(p.rowsRejected)}</span> rejected
          </span>
        ) : null}
        {p.state === "processing" ? <span data-testid={`${testid}-rate`}>{formatRowRate(p.rate)}</span> : null}
        {p.state === "processing" ? <span data-testid={`${testid}-eta`}>ETA {formatDuration(p.etaS)}</span> : null}
        {p.connection === "reconnecting" ? <span className="muted">reconnecting…</span> : null}
        {p.connection === "error" ? <span className="error-text">live updates unavailable: {p.connectionError}</span> : null}
      </div>
      {p.error ? (
        <p className="error-text" data-testid={`${testid}-error`}>
          {p.error}
        </p>
      ) : null}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status" aria-live="polite">
      Loading {what}…
    </p>
  );
}
