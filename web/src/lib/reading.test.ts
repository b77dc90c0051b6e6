import { describe, expect, it } from "vitest";
import { readingOf } from "./reading";

const file = { encoding: "utf-8", delimiter: "," };

describe("readingOf", () => {
  it("shows what the worker detected over what the upload sniffed", () => {
    const r = readingOf(file, { options: {}, detected: { encoding: "windows-1252", delimiter: ";", header: false, sheet: null } });
    expect(r.encoding).toEqual({ value: "windows-1252", source: "detected" });
    expect(r.delimiter).toEqual({ value: ";", source: "detected" });
    expect(r.header).toEqual({ value: false, source: "detected" });
    expect(r.sheet).toEqual({ value: null, source: "unknown" });
  });

  it("prefers what the job was given", () => {
    const r = readingOf(file, { options: { encoding: "latin-1", delimiter: "\t", header: true, sheet: "Q3" }, detected: { encoding: "utf-8", delimiter: ",", header: false, sheet: "Q1" } });
    expect(r.encoding).toEqual({ value: "latin-1", source: "given" });
    expect(r.delimiter).toEqual({ value: "\t", source: "given" });
    expect(r.header).toEqual({ value: true, source: "given" });
    expect(r.sheet).toEqual({ value: "Q3", source: "given" });
  });

  it("copes with jobs from before `detected` (absent or null) and with no job", () => {
    for (const job of [{ options: {} }, { options: {}, detected: null }, null]) {
      const r = readingOf(file, job);
      expect(r.encoding).toEqual({ value: "utf-8", source: "detected" });
      expect(r.header).toEqual({ value: null, source: "unknown" });
    }
    expect(readingOf({ encoding: null, delimiter: null }, null).delimiter).toEqual({ value: null, source: "unknown" });
  });

  it("reads an XLSX sheet the worker picked", () => {
    const r = readingOf({ encoding: null, delimiter: null }, { options: {}, detected: { encoding: null, delimiter: null, header: true, sheet: "Data" } });
    expect(r.sheet).toEqual({ value: "Data", source: "detected" });
    expect(r.encoding.source).toBe("unknown");
  });
});
