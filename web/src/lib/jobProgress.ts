/** A processing job as its event stream tells it: a reducer over SSE events. */

export const TERMINAL_STATES = ["completed", "failed", "cancelled", "timed_out"] as const;
export type TerminalState = (typeof TERMINAL_STATES)[number];
export type JobStateName = "pending" | "processing" | TerminalState;

export function isTerminal(state: string | null | undefined): boolean {
  return TERMINAL_STATES.includes(state as TerminalState);
}

/** Fields of a job event (workers.contracts.JobEvent); every field but type may be absent. */
export interface JobEventData {
  type?: string;
  job_id?: string;
  file_id?: string;
  state?: string;
  rows_ok?: number;
  rows_rejected?: number;
  bytes_read?: number;
  bytes_total?: number;
  progress?: number;
  rate?: number;
  eta_s?: number | null;
  error?: string | null;
  dataset_table?: string | null;
  widening?: { column: string; from_type: string; to_type: string; row_number?: number } | null;
  seq?: number;
}

export type Connection = "idle" | "connecting" | "open" | "reconnecting" | "closed" | "error";

export interface JobProgress {
  jobId: string | null;
  fileId: string | null;
  state: string;
  rowsOk: number;
  rowsRejected: number;
  bytesRead: number;
  bytesTotal: number;
  progress: number;
  rate: number;
  etaS: number | null;
  error: string | null;
  datasetTable: string | null;
  widenings: NonNullable<JobEventData["widening"]>[];
  seq: number;
  connection: Connection;
  connectionError: string | null;
}

export const initialJobProgress: JobProgress = {
  jobId: null,
  fileId: null,
  state: "pending",
  rowsOk: 0,
  rowsRejected: 0,
  bytesRead: 0,
  bytesTotal: 0,
  progress: 0,
  rate: 0,
  etaS: null,
  error: null,
  datasetTable: null,
  widenings: [],
  seq: 0,
  connection: "idle",
  connectionError: null,
};

export type JobAction =
  | { kind: "event"; event: string; data: JobEventData }
  | { kind: "connection"; connection: Connection; error?: string }
  | { kind: "reset"; jobId: string };

function merge(s: JobProgress, d: JobEventData): JobProgress {
  return {
    ...s,
    jobId: d.job_id ?? s.jobId,
    fileId: d.file_id ?? s.fileId,
    state: d.state ?? s.state,
    rowsOk: d.rows_ok ?? s.rowsOk,
    rowsRejected: d.rows_rejected ?? s.rowsRejected,
    bytesRead: d.bytes_read ?? s.bytesRead,
    bytesTotal: d.bytes_total ?? s.bytesTotal,
    progress: d.progress ?? s.progress,
    rate: d.rate ?? s.rate,
    etaS: d.eta_s === undefined ? s.etaS : d.eta_s,
    error: d.error === undefined ? s.error : d.error,
    datasetTable: d.dataset_table === undefined ? s.datasetTable : d.dataset_table,
    seq: d.seq ?? s.seq,
  };
}

export function jobProgressReducer(s: JobProgress, a: JobAction): JobProgress {
  switch (a.kind) {
    case "reset":
      return { ...initialJobProgress, jobId: a.jobId };
    case "connection":
      // Once the job has ended, the stream closing is the expected end, not an error.
      if (isTerminal(s.state) && a.connection !== "open") return { ...s, connection: "closed", connectionError: null };
      return { ...s, connection: a.connection, connectionError: a.error ?? null };
    case "event": {
      const d = a.data;
      // A snapshot is the whole state (also after a reconnect); anything else must be newer.
      if (a.event !== "snapshot" && d.seq != null && d.seq <= s.seq && s.seq > 0) return s;
      if (isTerminal(s.state) && a.event !== "snapshot") return s;
      let next = merge(s, d);
      if (a.event === "widened" && d.widening) next = { ...next, widenings: [...s.widenings, d.widening] };
      if (isTerminal(a.event)) {
        next = { ...next, state: a.event, etaS: null, rate: a.event === "completed" ? next.rate : 0 };
        if (a.event === "completed") next = { ...next, progress: 100 };
      }
      if (a.event === "snapshot" && isTerminal(next.state) && next.state === "completed") next = { ...next, progress: 100 };
      return next;
    }
  }
}
