import { useEffect, useReducer } from "react";
import { api } from "./lib/api";
import { initialJobProgress, isTerminal, jobProgressReducer, type JobEventData, type JobProgress } from "./lib/jobProgress";
import type { StreamLink } from "./lib/types";

const EVENTS = ["snapshot", "progress", "state", "widened", "completed", "failed", "cancelled", "timed_out"];

/**
 * Follows one job live: asks for a stream link (EventSource cannot send the key), then reduces
 * the stream's events. The browser reconnects by itself with Last-Event-ID; a stream whose end
 * the client already has answers 204 and the browser stops.
 */
export function useJobStream(jobId: string | null | undefined, onEnd?: (p: JobProgress) => void): JobProgress {
  const [state, dispatch] = useReducer(jobProgressReducer, initialJobProgress);

  useEffect(() => {
    if (!jobId) return;
    dispatch({ kind: "reset", jobId });
    dispatch({ kind: "connection", connection: "connecting" });
    let source: EventSource | null = null;
    let closed = false;
    const controller = new AbortController();
    let ended = false;

    api<StreamLink>("/api/v1/events/links", {
      method: "POST",
      body: { path: `/api/v1/jobs/${jobId}/events`, ttl_s: 24 * 3600 },
      signal: controller.signal,
    })
      .then((link) => {
        if (closed) return;
        source = new EventSource(link.url);
        source.onopen = () => dispatch({ kind: "connection", connection: "open" });
        source.onerror = () => {
          if (source?.readyState === EventSource.CLOSED) dispatch({ kind: "connection", connection: "closed" });
          else dispatch({ kind: "connection", connection: "reconnecting" });
        };
        for (const name of EVENTS) {
          source.addEventListener(name, (ev) => {
            let data: JobEventData = {};
            try {
              data = JSON.parse((ev as MessageEvent<string>).data) as JobEventData;
            } catch {
              return;
            }
            dispatch({ kind: "event", event: name, data });
            if (isTerminal(name) || (name === "snapshot" && isTerminal(data.state))) {
              if (!ended && isTerminal(name)) {
                ended = true;
                source?.close();
                dispatch({ kind: "connection", connection: "closed" });
              }
            }
          });
        }
      })
      .catch((e: Error) => {
        if (e.name !== "AbortError") dispatch({ kind: "connection", connection: "error", error: e.message });
      });

    return () => {
      closed = true;
      controller.abort();
      source?.close();
    };
  }, [jobId]);

  useEffect(() => {
    if (isTerminal(state.state) && onEnd) onEnd(state);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [state.state]);

  return state;
}
