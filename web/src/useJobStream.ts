import { useEffect, useReducer } from "react";
import { api } from "./lib/api";
import { initialJobProgress, isTerminal, jobProgressReducer, type JobEventData, type JobProgress } from "./lib/jobProgress";
import { streamSlots } from "./lib/streamSlots";
import type { JobRecord, StreamLink } from "./lib/types";

const EVENTS = ["snapshot", "progress", "state", "widened", "completed", "failed", "cancelled", "timed_out"];
const POLL_MS = 2000;

/** A job record read by polling, as the stream's snapshot would carry it. */
function recordAsEvent(j: JobRecord): JobEventData {
  return {
    job_id: j.id,
    file_id: j.file_id,
    state: j.state,
    rows_ok: j.rows_ok,
    rows_rejected: j.rows_rejected,
    bytes_read: j.bytes_read,
    bytes_total: j.bytes_total,
    progress: j.progress,
    rate: j.rate,
    eta_s: j.eta_s,
    error: j.error,
    dataset_table: j.dataset_table,
  };
}

/**
 * Follows one job live: asks for a stream link (EventSource cannot send the key), then reduces
 * the stream's events. The browser reconnects by itself with Last-Event-ID; a stream whose end
 * the client already has answers 204 and the browser stops. When every stream slot is taken
 * (see streamSlots), the job is polled until one frees up.
 */
export function useJobStream(jobId: string | null | undefined, onEnd?: (p: JobProgress) => void): JobProgress {
  const [state, dispatch] = useReducer(jobProgressReducer, initialJobProgress);

  useEffect(() => {
    if (!jobId) return;
    dispatch({ kind: "reset", jobId });
    dispatch({ kind: "connection", connection: "connecting" });
    let source: EventSource | null = null;
    let holding = false;
    let closed = false;
    let ended = false;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let offRelease: (() => void) | null = null;
    const controller = new AbortController();

    const release = () => {
      source?.close();
      source = null;
      if (holding) {
        holding = false;
        streamSlots.release();
      }
    };
    const finish = () => {
      ended = true;
      release();
      dispatch({ kind: "connection", connection: "closed" });
    };

    const stream = () => {
      offRelease?.();
      offRelease = null;
      holding = true;
      api<StreamLink>("/api/v1/events/links", {
        method: "POST",
        body: { path: `/api/v1/jobs/${jobId}/events`, ttl_s: 24 * 3600 },
        signal: controller.signal,
      })
        .then((link) => {
          if (closed || ended) return;
          source = new EventSource(link.url);
          source.onopen = () => dispatch({ kind: "connection", connection: "open" });
          source.onerror = () => {
            if (source?.readyState === EventSource.CLOSED) {
              release();
              dispatch({ kind: "connection", connection: "closed" });
            } else dispatch({ kind: "connection", connection: "reconnecting" });
          };
          for (const name of EVENTS) {
            source.addEventListener(name, (ev) => {
              let data: JobEventData;
              try {
                data = JSON.parse((ev as MessageEvent<string>).data) as JobEventData;
              } catch {
                return;
              }
              dispatch({ kind: "event", event: name, data });
              if (isTerminal(name) && !ended) finish();
            });
          }
        })
        .catch((e: Error) => {
          release();
          if (e.name !== "AbortError") dispatch({ kind: "connection", connection: "error", error: e.message });
        });
    };

    const poll = async () => {
      timer = null;
      if (closed || ended) return;
      if (streamSlots.tryAcquire()) return stream();
      try {
        const job = await api<JobRecord>(`/api/v1/jobs/${jobId}`, { signal: controller.signal });
        if (closed) return;
        dispatch({ kind: "event", event: "snapshot", data: recordAsEvent(job) });
        if (isTerminal(job.state)) {
          dispatch({ kind: "event", event: job.state, data: recordAsEvent(job) });
          finish();
          return;
        }
        dispatch({ kind: "connection", connection: "open" });
      } catch (e) {
        if ((e as Error).name === "AbortError") return;
      }
      timer = setTimeout(poll, POLL_MS);
    };

    if (streamSlots.tryAcquire()) stream();
    else {
      offRelease = streamSlots.onRelease(() => {
        if (timer && !closed && !ended) {
          clearTimeout(timer);
          void poll();
        }
      });
      void poll();
    }

    return () => {
      closed = true;
      controller.abort();
      if (timer) clearTimeout(timer);
      offRelease?.();
      release();
    };
  }, [jobId]);

  useEffect(() => {
    if (isTerminal(state.state) && onEnd) onEnd(state);
    // onEnd is called once per end of the job, not again when the caller re-renders
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [state.state]);

  return state;
}
