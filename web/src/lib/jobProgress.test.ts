import { describe, expect, it } from "vitest";
import { initialJobProgress, jobProgressReducer, type JobAction, type JobProgress } from "./jobProgress";

const run = (actions: JobAction[], from: JobProgress = initialJobProgress) => actions.reduce(jobProgressReducer, from);
const ev = (event: string, data: object): JobAction => ({ kind: "event", event, data });

describe("jobProgressReducer", () => {
  it("takes the snapshot, then progress, then the terminal event", () => {
    const s = run([
      { kind: "reset", jobId: "j1" },
      ev("snapshot", { type: "snapshot", job_id: "j1", state: "pending", seq: 1 }),
      ev("state", { type: "state", state: "processing", seq: 2 }),
      ev("progress", { type: "progress", state: "processing", rows_ok: 1000, bytes_read: 50, bytes_total: 100, progress: 50, rate: 2000, eta_s: 0.5, seq: 3 }),
      ev("completed", { type: "completed", state: "completed", rows_ok: 2000, rows_rejected: 3, progress: 100, dataset_table: "datasets.f_1", seq: 4 }),
    ]);
    expect(s).toMatchObject({ jobId: "j1", state: "completed", rowsOk: 2000, rowsRejected: 3, progress: 100, etaS: null, datasetTable: "datasets.f_1" });
  });

  it("ignores events older than what it has", () => {
    const s = run([
      ev("progress", { state: "processing", rows_ok: 500, seq: 5 }),
      ev("progress", { state: "processing", rows_ok: 100, seq: 4 }),
      ev("progress", { state: "processing", rows_ok: 500, seq: 5 }),
    ]);
    expect(s.rowsOk).toBe(500);
    expect(s.seq).toBe(5);
  });

  it("takes a reconnect's snapshot even with an older seq (it is the current state)", () => {
    const s = run([ev("progress", { state: "processing", rows_ok: 500, seq: 9 }), ev("snapshot", { state: "processing", rows_ok: 700, seq: 3 })]);
    expect(s.rowsOk).toBe(700);
  });

  it("keeps the error of a failed job and drops its rate and ETA", () => {
    const s = run([
      ev("progress", { state: "processing", rate: 900, eta_s: 12, seq: 1 }),
      ev("failed", { state: "failed", error: "the file has 1,700 columns", seq: 2 }),
    ]);
    expect(s).toMatchObject({ state: "failed", error: "the file has 1,700 columns", rate: 0, etaS: null });
  });

  it("nothing after the terminal event changes the job", () => {
    const s = run([ev("cancelled", { state: "cancelled", seq: 3 }), ev("progress", { state: "processing", rows_ok: 9, seq: 4 })]);
    expect(s.state).toBe("cancelled");
    expect(s.rowsOk).toBe(0);
  });

  it("collects widenings", () => {
    const w = { column: "amount", from_type: "bigint", to_type: "numeric", row_number: 18 };
    const s = run([ev("widened", { state: "processing", widening: w, seq: 1 })]);
    expect(s.widenings).toEqual([w]);
  });

  it("a finished job's snapshot is complete at 100 %", () => {
    const s = run([ev("snapshot", { state: "completed", rows_ok: 5, progress: 99.9, seq: 7 })]);
    expect(s.progress).toBe(100);
  });

  it("a stream closing after the end is not an error", () => {
    const s = run([ev("completed", { state: "completed", seq: 1 }), { kind: "connection", connection: "error", error: "x" }]);
    expect(s.connection).toBe("closed");
    expect(s.connectionError).toBeNull();
  });

  it("reports a lost connection while running", () => {
    const s = run([ev("progress", { state: "processing", seq: 1 }), { kind: "connection", connection: "reconnecting" }]);
    expect(s.connection).toBe("reconnecting");
  });
});
