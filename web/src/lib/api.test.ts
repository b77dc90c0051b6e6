import { describe, expect, it } from "vitest";
import { errorDetail, qs } from "./api";
import { tusChunkSize, tusUploadId, uploadErrorDetail } from "./uploadErrors";

describe("errorDetail", () => {
  it("reads Litestar's detail", () => {
    expect(errorDetail(415, '{"status_code":415,"detail":"the file is a PNG image, not CSV, TSV or XLSX"}')).toBe("the file is a PNG image, not CSV, TSV or XLSX");
  });
  it("adds validation extras", () => {
    expect(errorDetail(422, '{"detail":"Validation failed","extra":[{"key":"range","message":"must be 24h, 7d or 30d"}]}')).toBe(
      "Validation failed (range: must be 24h, 7d or 30d)",
    );
  });
  it("falls back to short text, never to an HTML page", () => {
    expect(errorDetail(502, "Bad gateway")).toBe("Bad gateway");
    expect(errorDetail(502, "<html>…</html>", "Bad Gateway")).toBe("502 Bad Gateway");
  });
});

describe("uploads", () => {
  it("shows the server's reason for a refused tus request", () => {
    const err = { message: "tus: unexpected response …", originalResponse: { getStatus: () => 415, getBody: () => '{"detail":"not a CSV: PNG image"}' } };
    expect(uploadErrorDetail(err)).toBe("415: not a CSV: PNG image");
  });
  it("explains a lost connection", () => {
    expect(uploadErrorDetail({ message: "tus: failed to upload chunk, response code: 0" })).toMatch(/connection/);
  });
  it("takes the upload id from the tus URL", () => {
    expect(tusUploadId("http://x/api/v1/tus/0b6f7e1c-aaaa")).toBe("0b6f7e1c-aaaa");
    expect(tusUploadId("/api/v1/tus/abc/")).toBe("abc");
    expect(tusUploadId(null)).toBeNull();
  });
  it("sends whole parts in each PATCH", () => {
    const part = 8 * 1024 * 1024;
    expect(tusChunkSize(part) % part).toBe(0);
    expect(tusChunkSize(part)).toBe(256 * 1024 * 1024);
    expect(tusChunkSize(100 * 1024 * 1024)).toBe(300 * 1024 * 1024);
    expect(tusChunkSize(300 * 1024 * 1024)).toBe(300 * 1024 * 1024);
    expect(tusChunkSize(5 * 1024 * 1024, 64 * 1024 * 1024)).toBe(65 * 1024 * 1024);
    expect(tusChunkSize(0)).toBe(256 * 1024 * 1024);
  });
  it("builds query strings without empty values", () => {
    expect(qs({ status: "", kind: "csv", offset: 0, limit: 25, q: null })).toBe("?kind=csv&offset=0&limit=25");
    expect(qs({})).toBe("");
  });
});
