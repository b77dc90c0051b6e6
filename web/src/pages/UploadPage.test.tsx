import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryRouter } from "react-router";
import { AuthProvider } from "../auth";
import { KEY_ITEM } from "../lib/keyStore";
import UploadPage from "./UploadPage";

// jsdom has no IndexedDB: give Golden Retriever one whose database never opens (nothing to restore).
// Hoisted above the imports: Golden Retriever looks for it when its module loads.
vi.hoisted(() => {
  Object.defineProperty(globalThis, "indexedDB", { configurable: true, value: { open: () => ({}) } });
});

const me = { key_id: "k1", name: "laptop", prefix: "slk_abcd", owner_id: "0f0f0f0f-1111-2222-3333-444455556666", admin: false, expires_at: null };
const config = { max_upload_bytes: 1000, accepted_types: [".csv", ".tsv"], part_size: 8 * 1024 * 1024, tus_endpoint: "/api/v1/tus/" };

function answer(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

function renderPage() {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <QueryClientProvider client={client}>
      <MemoryRouter>
        <AuthProvider>
          <UploadPage />
        </AuthProvider>
      </MemoryRouter>
    </QueryClientProvider>,
  );
}

describe("upload page", () => {
  beforeEach(() => {
    sessionStorage.setItem(KEY_ITEM, "slk_user");
    vi.stubGlobal(
      "ResizeObserver",
      class {
        observe() {}
        unobserve() {}
        disconnect() {}
      },
    );
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) => (url === "/api/v1/me" ? answer(200, me) : url === "/api/v1/web/config" ? answer(200, config) : answer(404, { detail: "Not Found" }))),
    );
  });
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
    sessionStorage.clear();
    localStorage.clear();
  });

  it("refuses a file of the wrong type or over the size limit before sending, and queues a good one", async () => {
    renderPage();
    const input = (await screen.findByTestId("file-input")) as HTMLInputElement;
    await waitFor(() => expect(screen.getByTestId("choose-files")).toHaveProperty("disabled", false));
    const files = [
      new File(["\x89PNG"], "picture.png", { type: "image/png" }),
      new File(["x".repeat(2000)], "huge.csv", { type: "text/csv" }),
      new File(["a,b\n1,2\n"], "good.csv", { type: "text/csv" }),
    ];
    fireEvent.change(input, { target: { files } });
    const notice = await screen.findByTestId("restriction-error");
    expect(notice.textContent).toContain("picture.png");
    expect(notice.textContent).toContain("huge.csv");
    const row = await screen.findByTestId("transfer-row");
    expect(screen.getAllByTestId("transfer-row")).toHaveLength(1);
    expect(row.dataset.fileName).toBe("good.csv");
    expect(row.dataset.state).toBe("waiting");
    expect(screen.getByTestId("upload-start").textContent).toContain("Upload 1 file(s)");
    expect(screen.getByTestId("upload-percent").textContent).toContain("0");
  });

  it("the per-file process box follows the default and can be turned off before sending", async () => {
    renderPage();
    await waitFor(() => expect(screen.getByTestId("choose-files")).toHaveProperty("disabled", false));
    fireEvent.click(screen.getByTestId("process-default"));
    fireEvent.change(screen.getByTestId("file-input"), { target: { files: [new File(["a\n"], "one.csv", { type: "text/csv" })] } });
    const box = (await screen.findByTestId("transfer-process")) as HTMLInputElement;
    expect(box.checked).toBe(false);
    fireEvent.click(box);
    expect((screen.getByTestId("transfer-process") as HTMLInputElement).checked).toBe(true);
  });
});
