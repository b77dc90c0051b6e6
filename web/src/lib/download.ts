import { api, ApiError, authHeaders, errorDetail } from "./api";

export interface DownloadLink {
  url: string;
  expires_at: string;
}

interface Downloadable {
  id: string;
  original_filename?: string;
  filename: string;
}

/** What a download does in the page; tests replace it. */
export interface DownloadDeps {
  requestLink(fileId: string): Promise<DownloadLink>;
  /** Blob fallback: the content route with the key in a header. */
  fetchContent(fileId: string): Promise<Blob>;
  /** Hand a URL to the browser's download manager. */
  save(url: string, name: string): void;
  objectUrl(blob: Blob): { url: string; revoke(): void };
}

function clickLink(url: string, name: string): void {
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.rel = "noopener";
  document.body.appendChild(a);
  a.click();
  a.remove();
}

const browserDeps: DownloadDeps = {
  requestLink: (fileId) => api<DownloadLink>(`/api/v1/files/${fileId}/links`, { method: "POST" }),
  fetchContent: async (fileId) => {
    const res = await fetch(`/api/v1/files/${fileId}/content`, { headers: authHeaders() });
    if (!res.ok) throw new Error(errorDetail(res.status, await res.text().catch(() => ""), res.statusText));
    return res.blob();
  },
  save: clickLink,
  objectUrl: (blob) => {
    const url = URL.createObjectURL(blob);
    return { url, revoke: () => URL.revokeObjectURL(url) };
  },
};

/** Whether `url` (absolute or a path) stays on `origin`: the page never sends anyone elsewhere. */
export function sameOrigin(url: string, origin: string): boolean {
  try {
    return new URL(url, origin).origin === origin;
  } catch {
    return false;
  }
}

/**
 * Downloads a stored file through a signed link (`POST /api/v1/files/{id}/links`): the browser
 * fetches it itself, without the key and straight to disk, however big the file. A server without
 * that route (404) gets the old way: fetch the content with the key, hand the blob to an object URL
 * (the whole file passes through the tab's memory).
 */
export async function downloadFile(file: Downloadable, deps: DownloadDeps = browserDeps): Promise<"link" | "blob"> {
  const name = file.original_filename || file.filename;
  try {
    const link = await deps.requestLink(file.id);
    if (!sameOrigin(link.url, location.origin)) throw new Error(`The server gave a download link to another site (${link.url}); not following it.`);
    deps.save(link.url, name);
    return "link";
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
  }
  const blob = await deps.fetchContent(file.id);
  const obj = deps.objectUrl(blob);
  deps.save(obj.url, name);
  setTimeout(obj.revoke, 60_000);
  return "blob";
}
