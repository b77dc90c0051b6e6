import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryRouter } from "react-router";
import OperationsPage from "./OperationsPage";
import { setApiKey } from "../lib/api";

// uPlot draws on a canvas jsdom lacks; the page's own figures (data-points, data-total, cards) are what is tested.
vi.mock("uplot", () => {
  class FakePlot {
    static paths = { bars: () => () => null };
    setSize() {}
    destroy() {}
  }
  return { default: FakePlot };
});

const metrics = (range: string) => ({
  range,
  bucket_seconds: range === "24h" ? 3600 : 86400,
  cards: {
    files_today: 12, bytes_today: 3 * 1024 ** 3, upload_success_rate: 0.75, median_upload_mib_s: 88.25, rows_ingested: 1_234_567,
    jobs_by_state: { completed: 9, failed: 2 }, queue_depth: 4, live_sessions: 1, incomplete_multipart_uploads: 0,
  },
  series: [
    { hour: "2026-11-30T02:00:00Z", uploads: 3, bytes: 1000, rows: 10, upload_failures: 1, job_failures: 0 },
    { hour: "2026-11-30T03:00:00Z", uploads: 9, bytes: 5000, rows: 90, upload_failures: 0, job_failures: 2 },
  ],
  health: { postgres: "ok", redis: "ok", storage: "connection refused by 127.0.0.1:9000", workers: "ok" },
});
const session = {
  id: "s1", owner_id: "abcdef12-0000-0000-0000-000000000000", filename: "big.csv", size: 4096, total_chunks: 4, received_chunks: 1,
  bytes_received: 1024, created_at: "2026-11-30T04:00:00Z", expires_at: "2026-12-01T04:00:00Z",
};

// jsdom's <dialog> cannot open as a modal.
HTMLDialogElement.prototype.showModal ??= function (this: HTMLDialogElement) {
  this.open = true;
};
HTMLDialogElement.prototype.close ??= function (this: HTMLDialogElement) {
  this.open = false;
};

function answer(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function renderPage() {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <QueryClientProvider client={client}>
      <MemoryRouter>
        <OperationsPage />
      </MemoryRouter>
    </QueryClientProvider>,
  );
}

describe("operations page", () => {
  let fetch: ReturnType<typeof vi.fn>;
  let sessions: (typeof session)[];
  beforeEach(() => {
    setApiKey("slk_admin");
    sessions = [session];
    vi.stubGlobal("ResizeObserver", class { observe() {} disconnect() {} });
    fetch = vi.fn(async (input: string, init?: RequestInit) => {
      const url = new URL(input, "http://localhost");
      if (url.pathname === "/api/v1/admin/metrics") return answer(200, metrics(url.searchParams.get("range") ?? "24h"));
      if (url.pathname === "/api/v1/admin/uploads") return answer(200, { items: sessions, total: sessions.length, offset: 0, limit: 20 });
      if (url.pathname === "/api/v1/admin/uploads/s1/cancel" && init?.method === "POST") {
        sessions = [];
        return new Response(null, { status: 204 });
      }
      return answer(404, { detail: "Not Found" });
    });
    vi.stubGlobal("fetch", fetch);
  });
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
    setApiKey(null);
  });

  it("shows health with the failing store's reason, the cards, and charts whose totals are the series' sums", async () => {
    renderPage();
    const storage = await screen.findByTestId("health-storage");
    expect(storage.dataset.ok).toBe("false");
    expect(storage.textContent).toContain("connection refused");
    expect(screen.getByTestId("health-postgres").dataset.ok).toBe("true");
    expect(screen.getByTestId("card-files-today").textContent).toContain("12");
    expect(screen.getByTestId("card-success-rate").textContent).toContain("75");
    expect(screen.getByTestId("card-median-speed").textContent).toContain("88.3 MiB/s");
    expect(screen.getByTestId("card-jobs").textContent).toMatch(/failed.*2/);
    expect(screen.getByTestId("chart-uploads").dataset).toMatchObject({ points: "2", total: "12" });
    expect(screen.getByTestId("chart-bytes").dataset.total).toBe("6000");
    expect(screen.getByTestId("chart-failures").dataset.total).toBe("3");
  });

  it("asks for the chosen range", async () => {
    renderPage();
    await screen.findByTestId("charts");
    fireEvent.click(screen.getByTestId("range-7d"));
    await waitFor(() =>
      expect(fetch.mock.calls.some(([u]) => new URL(u, "http://localhost").searchParams.get("range") === "7d")).toBe(true),
    );
    // 7 days come in daily buckets: the charts say so.
    await waitFor(() => expect(screen.getByTestId("chart-uploads").querySelector("[role=img]")?.getAttribute("aria-label")).toContain("Uploads per day"));
    expect(screen.getByTestId("range-7d").getAttribute("aria-pressed")).toBe("true");
  });

  it("aborts a live session after confirming, then shows none", async () => {
    renderPage();
    const row = await screen.findByTestId("session-row");
    expect(row.textContent).toContain("big.csv");
    expect(row.textContent).toContain("1 / 4");
    fireEvent.click(within(row).getByRole("button", { name: "Abort upload of big.csv" }));
    fireEvent.click(await screen.findByRole("button", { name: "Abort upload" }));
    expect(await screen.findByTestId("sessions-empty")).toBeTruthy();
    expect(fetch.mock.calls.some(([u, init]) => u === "/api/v1/admin/uploads/s1/cancel" && init?.method === "POST")).toBe(true);
  });

  it("a 403 shows the forbidden page and no figures", async () => {
    fetch.mockImplementation(async () => answer(403, { detail: "admin only" }));
    renderPage();
    expect(await screen.findByTestId("forbidden")).toBeTruthy();
    expect(screen.queryByTestId("cards")).toBeNull();
  });
});
