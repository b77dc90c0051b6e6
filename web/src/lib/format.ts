/** Human-readable figures: bytes, rates, durations, dates, counts. */

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes == null || !Number.isFinite(bytes)) return "–";
  const sign = bytes < 0 ? "-" : "";
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${sign}${Math.round(value)} B`;
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${sign}${value.toFixed(digits)} ${UNITS[unit]}`;
}

export function formatByteRate(bytesPerSecond: number | null | undefined): string {
  if (bytesPerSecond == null || !Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) return "–";
  return `${formatBytes(bytesPerSecond)}/s`;
}

export function formatCount(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return "–";
  return Math.round(n).toLocaleString("en-US");
}

export function formatRowRate(rowsPerSecond: number | null | undefined): string {
  if (rowsPerSecond == null || !Number.isFinite(rowsPerSecond) || rowsPerSecond <= 0) return "–";
  if (rowsPerSecond >= 1_000_000) return `${(rowsPerSecond / 1_000_000).toFixed(1)}M rows/s`;
  if (rowsPerSecond >= 10_000) return `${Math.round(rowsPerSecond / 1000)}k rows/s`;
  return `${formatCount(rowsPerSecond)} rows/s`;
}

/** 0.4 → "<1 s", 75 → "1 min 15 s", 3725 → "1 h 2 min", 2 days → "2 d 0 h". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 1) return "<1 s";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function formatPercent(fraction0to100: number | null | undefined, digits = 0): string {
  if (fraction0to100 == null || !Number.isFinite(fraction0to100)) return "–";
  return `${Math.min(100, Math.max(0, fraction0to100)).toFixed(digits)} %`;
}

export function formatDateTime(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "–";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Seconds between two ISO times (or until now), for "took" columns. */
export function secondsBetween(from: string | null | undefined, to?: string | null, now = Date.now()): number | null {
  if (!from) return null;
  const start = new Date(from).getTime();
  const end = to ? new Date(to).getTime() : now;
  if (Number.isNaN(start) || Number.isNaN(end)) return null;
  return Math.max(0, (end - start) / 1000);
}

/** Axis labels: 950, 12k, 4.3M, 1.2G. */
export function formatCompact(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return "–";
  const a = Math.abs(n);
  const fmt = (v: number, unit: string) => `${Number(v.toFixed(v < 10 ? 1 : 0))}${unit}`;
  if (a >= 1e9) return fmt(n / 1e9, "G");
  if (a >= 1e6) return fmt(n / 1e6, "M");
  if (a >= 1e4) return fmt(n / 1e3, "k");
  return String(Math.round(n * 100) / 100);
}
