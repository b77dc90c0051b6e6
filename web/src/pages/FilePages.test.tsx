import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryRouter } from "react-router";
import { App } from "../App";
import { AuthProvider } from "../auth";
import { KEY_ITEM } from "../lib/keyStore";

const FILE_ID = "11111111-2222-3333-4444-555555555555";
const me = { key_id: "k1", name: "laptop", prefix: "slk_abcd", owner_id: "0f0f0f0f-1111-2222-3333-444455556666", admin: false, expires_at: null };
const file = {
  id: FILE_ID, filename: "sales.csv", original_filename: "sales.csv", size: 2048, sha256: "ab", kind: "csv", content_type: "text/csv",
  status: "stored", error: null, process: true, bucket: "b", storage_key: "k", created_at: "2026-11-30T04:00:00Z", stored_at: "2026-11-30T04:00:01Z",
  duration_ms: 1000, job_id: "job-0", job_state: "completed", rows_ok: 10, rows_rejected: 0, dataset_table: null, estimated_processing_s: null,
  encoding: "utf-8", delimiter: ",",
};
function job(i: number, extra: Record<string, unknown> = {}) {
  return {
    id: `job-${i}`, batch_id: "b", file_id: FILE_ID, state: "completed", options: {}, dataset_table: null, rows_ok: 10, rows_rejected: 0,
    bytes_read: 0, bytes_total: 0, progress: 1, rate: 0, eta_s: null, error: null, attempts: 1, created_at: "2026-11-30T04:00:00Z",
    started_at: null, finished_at: null, cancel_requested: false, widenings: [], estimated_processing_s: null, ...extra,
  };
}
const DETECTED = { encoding: "windows-1252", delimiter: ";", header: true, sheet: null };

function answer(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

type Route = (url: URL, init: RequestInit | undefined) => Response | undefined;
function serve(route: Route) {
  const fetch = vi.fn(async (input: string, init?: RequestInit) => {
    const url = new URL(input, "http://localhost");
    if (url.pathname === "/api/v1/me") return answer(200, me);
    return route(url, init) ?? answer(404, { status_code: 404, detail: "Not Found" });
  });
  vi.stubGlobal("fetch", fetch);
  return fetch;
}

function renderAt(path: string) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <QueryClientProvider client={client}>
      <MemoryRouter initialEntries={[path]}>
        <AuthProvider>
          <App />
        </AuthProvider>
      </MemoryRouter>
    </QueryClientProvider>,
  );
}

const calls = (fetch: ReturnType<typeof serve>, path: string) =>
  fetch.mock.calls.map(([u]) => new URL(u, "http://localhost")).filter((u) => u.pathname === path);

describe("file page", () => {
  beforeEach(() => sessionStorage.setItem(KEY_ITEM, "slk_user"));
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
    sessionStorage.clear();
  });

  it("asks the jobs route for this file's jobs, pages them, and shows what the worker detected", async () => {
    const jobs = Array.from({ length: 45 }, (_, i) => job(i, i === 0 ? { detected: DETECTED } : {}));
    const fetch = serve((url) => {
      if (url.pathname === `/api/v1/files/${FILE_ID}`) return answer(200, file);
      if (url.pathname === "/api/v1/jobs/job-0") return answer(200, jobs[0]);
      if (url.pathname === "/api/v1/jobs") {
        const offset = Number(url.searchParams.get("offset") ?? 0);
        const limit = Number(url.searchParams.get("limit"));
        return answer(200, { items: jobs.slice(offset, offset + limit), total: jobs.length, offset, limit });
      }
    });
    renderAt(`/files/${FILE_ID}`);
    await waitFor(() => expect(screen.getAllByTestId("job-row")).toHaveLength(20));
    const first = calls(fetch, "/api/v1/jobs")[0];
    expect(first.searchParams.get("file_id")).toBe(FILE_ID);
    expect(Number(first.searchParams.get("limit"))).toBeLessThanOrEqual(100);
    expect(screen.getByTestId("file-encoding").textContent).toContain("windows-1252");
    expect(screen.getByTestId("file-encoding").dataset.source).toBe("detected");
    expect(screen.getByTestId("file-delimiter").textContent).toContain('";"');
    expect(screen.getByTestId("file-header").textContent).toContain("yes");
    fireEvent.click(screen.getByTestId("jobs-pager-next"));
    await waitFor(() => expect(screen.getAllByTestId("job-row")[0].dataset.jobId).toBe("job-20"));
    expect(calls(fetch, "/api/v1/jobs").at(-1)?.searchParams.get("offset")).toBe("20");
    // The record still describes the latest job while an older page of the history is shown.
    expect(screen.getByTestId("file-encoding").textContent).toContain("windows-1252");
  });

  it("never lists another file's job (a server that ignores file_id)", async () => {
    serve((url) => {
      if (url.pathname === `/api/v1/files/${FILE_ID}`) return answer(200, { ...file, job_id: null, job_state: null });
      if (url.pathname === "/api/v1/jobs") return answer(200, { items: [job(1), job(2, { file_id: "someone-else" })], total: 2, offset: 0, limit: 20 });
    });
    renderAt(`/files/${FILE_ID}`);
    await waitFor(() => expect(screen.getAllByTestId("job-row")).toHaveLength(1));
    expect(screen.getByTestId("job-row").dataset.jobId).toBe("job-1");
  });

  it("downloads through a signed link, without fetching the content", async () => {
    const fetch = serve((url, init) => {
      if (url.pathname === `/api/v1/files/${FILE_ID}`) return answer(200, file);
      if (url.pathname === "/api/v1/jobs") return answer(200, { items: [], total: 0, offset: 0, limit: 20 });
      if (url.pathname === `/api/v1/files/${FILE_ID}/links` && init?.method === "POST")
        return answer(201, { url: `/api/v1/files/${FILE_ID}/download?sig=s`, expires_at: "2026-11-30T06:00:00Z" });
    });
    const clicked: string[] = [];
    const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      clicked.push(`${this.getAttribute("href")} as ${this.download}`);
    });
    try {
      renderAt(`/files/${FILE_ID}`);
      fireEvent.click(await screen.findByTestId("file-download"));
      await waitFor(() => expect(clicked).toEqual([`/api/v1/files/${FILE_ID}/download?sig=s as sales.csv`]));
      expect(calls(fetch, `/api/v1/files/${FILE_ID}/content`)).toHaveLength(0);
      const [, init] = fetch.mock.calls.find(([u]) => u.endsWith("/links"))!;
      expect((init?.headers as Record<string, string>).Authorization).toBe("Bearer slk_user");
    } finally {
      click.mockRestore();
    }
  });
});

describe("files page", () => {
  beforeEach(() => sessionStorage.setItem(KEY_ITEM, "slk_user"));
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
    sessionStorage.clear();
  });

  it("sends q and kind to the server and pages with its total", async () => {
    const fetch = serve((url) => {
      if (url.pathname === "/api/v1/files") {
        const offset = Number(url.searchParams.get("offset") ?? 0);
        const items = Array.from({ length: 25 }, (_, i) => ({ ...file, id: `f-${offset + i}`, filename: `sales-${offset + i}.csv` }));
        return answer(200, { items, total: 60, offset, limit: 25 });
      }
    });
    renderAt("/files?q=Sales&kind=csv");
    await waitFor(() => expect(screen.getAllByTestId("file-row")).toHaveLength(25));
    const first = calls(fetch, "/api/v1/files")[0];
    expect(first.searchParams.get("q")).toBe("Sales");
    expect(first.searchParams.get("kind")).toBe("csv");
    expect(first.searchParams.get("limit")).toBe("25");
    expect(screen.getByTestId("pager").textContent).toContain("Page 1 of 3");
    fireEvent.click(screen.getByTestId("pager-next"));
    await waitFor(() => expect(screen.getAllByTestId("file-row")[0].dataset.fileId).toBe("f-25"));
    const second = calls(fetch, "/api/v1/files").at(-1)!;
    expect([second.searchParams.get("offset"), second.searchParams.get("q"), second.searchParams.get("kind")]).toEqual(["25", "Sales", "csv"]);
  });
});
