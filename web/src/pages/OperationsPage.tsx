import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useMemo, useState } from "react";
import { Forbidden } from "../components/Forbidden";
import { Chart, type SeriesSpec } from "../components/Chart";
import { Badge, ConfirmDialog, ErrorBox, Loading, Pager } from "../components/ui";
import { api, ApiError, qs } from "../lib/api";
import { formatBytes, formatCompact, formatCount, formatDateTime, formatPercent } from "../lib/format";
import type { ActiveUpload, Metrics, Page } from "../lib/types";
import { usePageTitle } from "../usePageTitle";

const RANGES = [
  ["24h", "24 hours"],
  ["7d", "7 days"],
  ["30d", "30 days"],
] as const;
const REFRESH_MS = 30_000;
const HEALTH_LABELS: Record<string, string> = { postgres: "PostgreSQL", redis: "Redis", storage: "Object store", workers: "Workers" };

export default function OperationsPage() {
  usePageTitle("Operations");
  const [range, setRange] = useState<string>("24h");
  const metrics = useQuery({
    queryKey: ["metrics", range],
    queryFn: () => api<Metrics>(`/api/v1/admin/metrics${qs({ range })}`),
    refetchInterval: REFRESH_MS,
    refetchIntervalInBackground: false,
    placeholderData: keepPreviousData,
  });
  if (metrics.error instanceof ApiError && metrics.error.status === 403) return <Forbidden />;
  const m = metrics.data;

  return (
    <section className="page" data-testid="operations-page">
      <div className="row-between">
        <h1>Operations</h1>
        <div className="actions">
          <div role="group" aria-label="Time range" className="segmented">
            {RANGES.map(([value, label]) => (
              <button key={value} type="button" aria-pressed={range === value} onClick={() => setRange(value)} data-testid={`range-${value}`}>
                {label}
              </button>
            ))}
          </div>
          <button type="button" onClick={() => metrics.refetch()} disabled={metrics.isFetching} data-testid="ops-refresh">
            {metrics.isFetching ? "Refreshing…" : "Refresh"}
          </button>
        </div>
      </div>
      <p className="muted small" aria-live="polite" data-testid="ops-updated">
        {metrics.dataUpdatedAt ? `Updated ${formatDateTime(new Date(metrics.dataUpdatedAt).toISOString())}; refreshes every 30 s.` : ""}
      </p>
      <ErrorBox error={metrics.error} />
      {metrics.isPending ? <Loading what="metrics" /> : null}
      {m ? (
        <>
          <Health health={m.health} />
          <Cards m={m} />
          <Charts m={m} />
        </>
      ) : null}
      <LiveSessions />
    </section>
  );
}

function Health({ health }: { health: Metrics["health"] }) {
  return (
    <section aria-labelledby="health-title" className="card">
      <h2 id="health-title">Health</h2>
      <ul className="health" data-testid="health">
        {Object.entries(health).map(([name, value]) => {
          const ok = value === "ok";
          return (
            <li key={name} className={ok ? "ok" : "bad"} data-testid={`health-${name}`} data-ok={ok}>
              <span className="dot" aria-hidden="true" />
              <strong>{HEALTH_LABELS[name] ?? name}</strong>
              <span className="health-state">{ok ? "ok" : "failing"}</span>
              {ok ? null : (
                <span className="health-reason" title={value}>
                  {value.length > 160 ? `${value.slice(0, 160)}…` : value}
                </span>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}

function Card({ label, value, testid, hint }: { label: string; value: string; testid: string; hint?: string }) {
  return (
    <div className="stat card" data-testid={testid}>
      <div className="stat-label">{label}</div>
      <div className="stat-value">{value}</div>
      {hint ? <div className="muted small">{hint}</div> : null}
    </div>
  );
}

function Cards({ m }: { m: Metrics }) {
  const c = m.cards;
  const jobs = Object.entries(c.jobs_by_state ?? {});
  return (
    <section aria-label="Figures" className="cards" data-testid="cards">
      <Card label="Files today" value={formatCount(c.files_today)} testid="card-files-today" />
      <Card label="Bytes today" value={formatBytes(c.bytes_today)} testid="card-bytes-today" />
      <Card label="Upload success rate" value={c.upload_success_rate == null ? "–" : formatPercent(c.upload_success_rate * 100, 1)} testid="card-success-rate" />
      <Card label="Median upload speed" value={c.median_upload_mib_s == null ? "–" : `${c.median_upload_mib_s.toFixed(1)} MiB/s`} testid="card-median-speed" />
      <Card label={`Rows ingested (${m.range})`} value={formatCount(c.rows_ingested)} testid="card-rows" />
      <Card label="Queue depth" value={formatCount(c.queue_depth)} testid="card-queue" />
      <Card label="Live upload sessions" value={formatCount(c.live_sessions)} testid="card-live-sessions" />
      <Card label="Incomplete multipart uploads" value={formatCount(c.incomplete_multipart_uploads)} testid="card-multipart" />
      <div className="stat card" data-testid="card-jobs">
        <div className="stat-label">Jobs by state</div>
        {jobs.length ? (
          <ul className="jobs-by-state">
            {jobs.map(([state, n]) => (
              <li key={state}>
                <Badge value={state} /> {formatCount(n)}
              </li>
            ))}
          </ul>
        ) : (
          <div className="stat-value">0</div>
        )}
      </div>
    </section>
  );
}

const count = (v: number) => formatCount(v);
const bytes = (v: number) => formatBytes(v);

function Charts({ m }: { m: Metrics }) {
  const { x, uploads, volume, rows, failures } = useMemo(() => {
    const x = m.series.map((p) => new Date(p.hour).getTime() / 1000);
    const uploads: SeriesSpec[] = [{ label: "Uploads", color: "#1d4ed8", values: m.series.map((p) => p.uploads) }];
    const volume: SeriesSpec[] = [{ label: "Bytes", color: "#0f766e", values: m.series.map((p) => p.bytes) }];
    const rows: SeriesSpec[] = [{ label: "Rows", color: "#7c3aed", values: m.series.map((p) => p.rows) }];
    const failures: SeriesSpec[] = [
      { label: "Upload failures", color: "#dc2626", values: m.series.map((p) => p.upload_failures) },
      { label: "Job failures", color: "#ea580c", values: m.series.map((p) => p.job_failures) },
    ];
    return { x, uploads, volume, rows, failures };
  }, [m.series]);
  const per = m.bucket_seconds >= 86400 ? "day" : "hour";
  if (!x.length) return <p className="muted" data-testid="charts-empty">No activity in this range yet.</p>;
  return (
    <section aria-label="Charts" className="charts" data-testid="charts">
      <Chart title={`Uploads per ${per}`} x={x} series={uploads} format={count} axisFormat={formatCompact} testid="chart-uploads" integer bars />
      <Chart title={`Bytes uploaded per ${per}`} x={x} series={volume} format={bytes} testid="chart-bytes" bars />
      <Chart title={`Rows ingested per ${per}`} x={x} series={rows} format={count} axisFormat={formatCompact} testid="chart-rows" integer bars />
      <Chart title={`Failures per ${per}`} x={x} series={failures} format={count} axisFormat={formatCompact} testid="chart-failures" integer />
    </section>
  );
}

const SESSIONS_LIMIT = 20;

function LiveSessions() {
  const [offset, setOffset] = useState(0);
  const [toCancel, setToCancel] = useState<ActiveUpload | null>(null);
  const client = useQueryClient();
  const sessions = useQuery({
    queryKey: ["admin-uploads", offset],
    queryFn: () => api<Page<ActiveUpload>>(`/api/v1/admin/uploads${qs({ offset, limit: SESSIONS_LIMIT })}`),
    refetchInterval: REFRESH_MS,
    placeholderData: keepPreviousData,
  });
  const cancel = useMutation({
    mutationFn: (s: ActiveUpload) => api(`/api/v1/admin/uploads/${s.id}/cancel`, { method: "POST" }),
    onSuccess: () => {
      setToCancel(null);
      client.invalidateQueries({ queryKey: ["admin-uploads"] });
    },
  });
  return (
    <section className="card" aria-labelledby="sessions-title">
      <h2 id="sessions-title">Live upload sessions</h2>
      <ErrorBox error={sessions.error} />
      {sessions.isPending ? <Loading what="sessions" /> : null}
      {sessions.data && sessions.data.items.length === 0 ? <p className="muted" data-testid="sessions-empty">No upload is receiving right now.</p> : null}
      {sessions.data && sessions.data.items.length ? (
        <>
          <div className="table-wrap">
            <table className="table" data-testid="sessions-table">
              <thead>
                <tr>
                  <th scope="col">File</th>
                  <th scope="col">Owner</th>
                  <th scope="col" className="num">Received</th>
                  <th scope="col" className="num">Chunks</th>
                  <th scope="col">Started</th>
                  <th scope="col">Expires</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {sessions.data.items.map((s) => (
                  <tr key={s.id} data-testid="session-row">
                    <th scope="row" className="filename">
                      {s.filename}
                    </th>
                    <td>
                      <code>{s.owner_id.slice(0, 8)}</code>
                    </td>
                    <td className="num">
                      {formatBytes(s.bytes_received)} of {formatBytes(s.size)} ({formatPercent(s.size ? (100 * s.bytes_received) / s.size : 0)})
                    </td>
                    <td className="num">
                      {formatCount(s.received_chunks)} / {formatCount(s.total_chunks)}
                    </td>
                    <td>{formatDateTime(s.created_at)}</td>
                    <td>{formatDateTime(s.expires_at)}</td>
                    <td>
                      <button type="button" className="danger" onClick={() => setToCancel(s)} aria-label={`Abort upload of ${s.filename}`}>
                        Abort
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager offset={offset} limit={SESSIONS_LIMIT} total={sessions.data.total} onChange={setOffset} label="Sessions pages" testid="sessions-pager" />
        </>
      ) : null}
      <ConfirmDialog
        open={!!toCancel}
        title="Abort this upload?"
        confirmLabel="Abort upload"
        busy={cancel.isPending}
        onCancel={() => {
          setToCancel(null);
          cancel.reset();
        }}
        onConfirm={() => toCancel && cancel.mutate(toCancel)}
      >
        <p>
          The upload of <strong>{toCancel?.filename}</strong> stops and its received bytes are released. Its owner has to start again.
        </p>
        {cancel.error ? <p className="error-text">{cancel.error.message}</p> : null}
      </ConfirmDialog>
    </section>
  );
}
