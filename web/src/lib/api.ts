/** The Sluice API over fetch: same origin, the key as a bearer token, errors carrying `detail`. */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly body: unknown = null,
  ) {
    super(detail);
    this.name = "ApiError";
  }
}

let currentKey: string | null = null;
let onUnauthorized: (() => void) | null = null;

export function setApiKey(key: string | null): void {
  currentKey = key;
}

export function getApiKey(): string | null {
  return currentKey;
}

/** Called when a request the user made with a stored key answers 401 (revoked or expired key). */
export function setUnauthorizedHandler(fn: (() => void) | null): void {
  onUnauthorized = fn;
}

export function authHeaders(key = currentKey): Record<string, string> {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** The `detail` of a Litestar error body, else the status text. */
export function errorDetail(status: number, text: string, statusText = ""): string {
  try {
    const body = JSON.parse(text) as { detail?: unknown; extra?: unknown };
    if (body && typeof body.detail === "string" && body.detail) {
      const extra = Array.isArray(body.extra)
        ? body.extra
            .map((e: { key?: string; message?: string }) => [e.key, e.message].filter(Boolean).join(": "))
            .filter(Boolean)
            .join("; ")
        : "";
      return extra ? `${body.detail} (${extra})` : body.detail;
    }
  } catch {
    /* not JSON */
  }
  const trimmed = text.trim();
  if (trimmed && trimmed.length < 300 && !trimmed.startsWith("<")) return trimmed;
  return `${status} ${statusText}`.trim() || "The request failed";
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  key?: string | null;
  signal?: AbortSignal;
  /** A 401 here is the answer itself (the sign-in check), not a reason to sign out. */
  quiet401?: boolean;
}

export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json", ...authHeaders(opts.key === undefined ? currentKey : opts.key) };
  let body: BodyInit | undefined;
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(path, { method: opts.method ?? "GET", headers, body, signal: opts.signal });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError(0, "Sluice could not be reached: check your connection and try again.");
  }
  if (!res.ok) {
    const text = await res.text().catch(() => "");
    if (res.status === 401 && !opts.quiet401) onUnauthorized?.();
    throw new ApiError(res.status, errorDetail(res.status, text, res.statusText), text);
  }
  if (res.status === 204 || res.status === 202 && res.headers.get("content-length") === "0") return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export function qs(params: Record<string, string | number | boolean | null | undefined>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : "";
}
