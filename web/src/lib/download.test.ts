import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError } from "./api";
import { downloadFile, sameOrigin, type DownloadDeps } from "./download";

const file = { id: "f1", filename: "sales.csv", original_filename: "Sales 2026.csv" };

function deps(over: Partial<DownloadDeps> = {}) {
  const saved: { url: string; name: string }[] = [];
  const revoked: string[] = [];
  const d: DownloadDeps = {
    requestLink: vi.fn(async () => ({ url: "/api/v1/files/f1/download?sig=abc", expires_at: "2026-11-30T06:00:00Z" })),
    fetchContent: vi.fn(async () => new Blob(["a,b\n1,2\n"])),
    save: (url, name) => saved.push({ url, name }),
    objectUrl: () => ({ url: "blob:x", revoke: () => revoked.push("blob:x") }),
    ...over,
  };
  return { d, saved, revoked };
}

describe("downloadFile", () => {
  afterEach(() => vi.useRealTimers());

  it("follows a signed link and never fetches the content itself", async () => {
    const { d, saved } = deps();
    expect(await downloadFile(file, d)).toBe("link");
    expect(d.requestLink).toHaveBeenCalledWith("f1");
    expect(d.fetchContent).not.toHaveBeenCalled();
    expect(saved).toEqual([{ url: "/api/v1/files/f1/download?sig=abc", name: "Sales 2026.csv" }]);
  });

  it("falls back to the blob when the server has no links route (404)", async () => {
    vi.useFakeTimers();
    const { d, saved, revoked } = deps({ requestLink: vi.fn(async () => Promise.reject(new ApiError(404, "Not Found"))) });
    expect(await downloadFile(file, d)).toBe("blob");
    expect(d.fetchContent).toHaveBeenCalledWith("f1");
    expect(saved).toEqual([{ url: "blob:x", name: "Sales 2026.csv" }]);
    expect(revoked).toEqual([]);
    vi.advanceTimersByTime(60_000);
    expect(revoked).toEqual(["blob:x"]);
  });

  it("reports any other refusal and does not fall back", async () => {
    for (const status of [401, 403, 409, 410, 500]) {
      const { d, saved } = deps({ requestLink: vi.fn(async () => Promise.reject(new ApiError(status, `refused ${status}`))) });
      await expect(downloadFile(file, d)).rejects.toThrow(`refused ${status}`);
      expect(d.fetchContent).not.toHaveBeenCalled();
      expect(saved).toEqual([]);
    }
  });

  it("reports the fallback's own failure (e.g. the file is gone)", async () => {
    const { d, saved } = deps({
      requestLink: vi.fn(async () => Promise.reject(new ApiError(404, "Not Found"))),
      fetchContent: vi.fn(async () => Promise.reject(new Error("File not found"))),
    });
    await expect(downloadFile(file, d)).rejects.toThrow("File not found");
    expect(saved).toEqual([]);
  });

  it("refuses a link to another origin", async () => {
    const { d, saved } = deps({ requestLink: vi.fn(async () => ({ url: "https://evil.example/x", expires_at: "" })) });
    await expect(downloadFile(file, d)).rejects.toThrow(/another site/);
    expect(saved).toEqual([]);
  });

  it("uses the stored name when the original is empty", async () => {
    const { d, saved } = deps();
    await downloadFile({ id: "f1", filename: "sales.csv", original_filename: "" }, d);
    expect(saved[0].name).toBe("sales.csv");
  });
});

describe("sameOrigin", () => {
  it("accepts paths and same-origin URLs only", () => {
    const o = "https://sluice.example";
    expect(sameOrigin("/api/v1/x", o)).toBe(true);
    expect(sameOrigin("https://sluice.example/api", o)).toBe(true);
    expect(sameOrigin("//evil.example/x", o)).toBe(false);
    expect(sameOrigin("https://sluice.example:8443/x", o)).toBe(false);
    expect(sameOrigin("javascript:alert(1)", o)).toBe(false);
  });
});
