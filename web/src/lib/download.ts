import { authHeaders, errorDetail } from "./api";

/**
 * Downloads a stored file. The content route needs the key in a header, so the browser cannot
 * follow a plain link: fetch it, then hand the blob to a temporary object URL.
 */
export async function downloadFile(file: { id: string; original_filename?: string; filename: string }): Promise<void> {
  const res = await fetch(`/api/v1/files/${file.id}/content`, { headers: authHeaders() });
  if (!res.ok) throw new Error(errorDetail(res.status, await res.text().catch(() => ""), res.statusText));
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = file.original_filename || file.filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
