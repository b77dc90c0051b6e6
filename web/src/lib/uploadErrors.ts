/** What to tell the user when a tus request fails: the server's `detail`, not tus-js-client's dump. */

import { errorDetail } from "./api";

interface XhrLike {
  status?: number;
  responseText?: string;
  statusText?: string;
}

interface TusLikeError {
  message?: string;
  originalResponse?: { getStatus(): number; getBody(): string } | null;
}

export function uploadErrorDetail(error: TusLikeError | null | undefined, xhr?: XhrLike | null): string {
  const status = error?.originalResponse?.getStatus() ?? xhr?.status ?? 0;
  const body = error?.originalResponse?.getBody() ?? xhr?.responseText ?? "";
  if (status) {
    const detail = errorDetail(status, body, xhr?.statusText);
    return `${status}: ${detail}`;
  }
  const message = error?.message ?? "The upload failed";
  if (/NetworkError|network|Failed to fetch|status: 0|response code: 0/i.test(message))
    return "The connection to Sluice was lost; the upload resumes where it stopped when you retry.";
  return message;
}

/** The tus upload id: the last path segment of its URL (Sluice's upload session id). */
export function tusUploadId(url: string | null | undefined): string | null {
  if (!url) return null;
  const path = url.split("?")[0].replace(/\/+$/, "");
  const last = path.slice(path.lastIndexOf("/") + 1);
  return last || null;
}

/**
 * Bytes per PATCH: a whole number of the server's parts, about `target`. Large, because each
 * PATCH costs a round trip and the server's part bookkeeping (64 MiB PATCHes reached 0.69 of
 * curl's speed on 200 MB, 256 MiB 0.99); a cut PATCH loses nothing, as the server keeps what
 * arrived beyond its last whole part.
 */
export function tusChunkSize(partSize: number, target = 256 * 1024 * 1024): number {
  if (!partSize || partSize <= 0) return target;
  return partSize * Math.max(1, Math.round(target / partSize));
}
