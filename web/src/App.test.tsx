import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryRouter } from "react-router";
import { App } from "./App";
import { AuthProvider } from "./auth";
import { KEY_ITEM } from "./lib/keyStore";

const me = (admin: boolean) => ({ key_id: "k1", name: "alice-laptop", prefix: "slk_abcd", owner_id: "0f0f0f0f-1111-2222-3333-444455556666", admin, expires_at: null });

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

function answer(status: number, body: unknown) {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

describe("sign in", () => {
  beforeEach(() => {
    sessionStorage.clear();
    localStorage.clear();
  });
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
  });

  it("says a wrong key is not valid and keeps nothing", async () => {
    const fetch = vi.fn(async () => answer(401, { status_code: 401, detail: "Invalid API key" }));
    vi.stubGlobal("fetch", fetch);
    renderAt("/");
    fireEvent.change(screen.getByTestId("api-key-input"), { target: { value: "slk_wrong" } });
    fireEvent.click(screen.getByTestId("sign-in-submit"));
    expect(await screen.findByTestId("sign-in-error")).toHaveProperty("textContent", expect.stringContaining("This key is not valid"));
    expect(fetch).toHaveBeenCalledWith("/api/v1/me", expect.objectContaining({ headers: expect.objectContaining({ Authorization: "Bearer slk_wrong" }) }));
    expect(sessionStorage.getItem(KEY_ITEM)).toBeNull();
    expect(localStorage.getItem(KEY_ITEM)).toBeNull();
  });

  it("remembers a good key on the device when ticked, shows its name, and forgets it on sign out", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => answer(200, me(false))));
    renderAt("/files/unknown");
    fireEvent.change(screen.getByTestId("api-key-input"), { target: { value: " slk_good " } });
    fireEvent.click(screen.getByTestId("remember-key"));
    fireEvent.click(screen.getByTestId("sign-in-submit"));
    expect(await screen.findByTestId("key-name")).toHaveProperty("textContent", "alice-laptop");
    expect(localStorage.getItem(KEY_ITEM)).toBe("slk_good");
    expect(sessionStorage.getItem(KEY_ITEM)).toBeNull();
    fireEvent.click(screen.getByTestId("sign-out"));
    await waitFor(() => expect(screen.getByTestId("sign-in-form")).toBeTruthy());
    expect(localStorage.getItem(KEY_ITEM)).toBeNull();
  });
});

describe("server trouble", () => {
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
    sessionStorage.clear();
  });

  it("a 503 on /me keeps the key and says why, instead of loading for ever (after its retries)", { timeout: 10_000 }, async () => {
    sessionStorage.setItem(KEY_ITEM, "slk_user");
    vi.stubGlobal("fetch", vi.fn(async () => answer(503, { status_code: 503, detail: "the database is unavailable" })));
    renderAt("/files");
    expect((await screen.findByTestId("me-error", {}, { timeout: 8000 })).textContent).toContain("the database is unavailable");
    expect(sessionStorage.getItem(KEY_ITEM)).toBe("slk_user");
  });

  it("a 401 on /me (revoked key) signs out with a reason", async () => {
    sessionStorage.setItem(KEY_ITEM, "slk_revoked");
    vi.stubGlobal("fetch", vi.fn(async () => answer(401, { status_code: 401, detail: "revoked" })));
    renderAt("/files");
    expect(await screen.findByTestId("sign-in-form")).toBeTruthy();
    expect(screen.getByRole("status").textContent).toContain("no longer valid");
    expect(sessionStorage.getItem(KEY_ITEM)).toBeNull();
  });
});

describe("operations", () => {
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
    sessionStorage.clear();
  });

  it("a non-admin key gets the 403 page and no Operations link", async () => {
    sessionStorage.setItem(KEY_ITEM, "slk_user");
    const fetch = vi.fn(async (_url: string) => answer(200, me(false)));
    vi.stubGlobal("fetch", fetch);
    renderAt("/operations");
    expect(await screen.findByTestId("forbidden")).toBeTruthy();
    expect(screen.queryByTestId("nav-operations")).toBeNull();
    expect(fetch.mock.calls.some(([url]) => url.includes("/admin/"))).toBe(false);
  });

  it("an admin key sees the Operations link", async () => {
    sessionStorage.setItem(KEY_ITEM, "slk_admin");
    vi.stubGlobal("fetch", vi.fn(async () => answer(200, me(true))));
    renderAt("/files/x");
    expect(await screen.findByTestId("nav-operations")).toBeTruthy();
  });
});
