import { describe, expect, it } from "vitest";
import { formatByteRate, formatCompact, formatBytes, formatCount, formatDuration, formatPercent, formatRowRate, secondsBetween } from "./format";

describe("formatBytes", () => {
  it.each([
    [0, "0 B"],
    [1023, "1023 B"],
    [39.759, "40 B"],
    [1024, "1.00 KiB"],
    [1536, "1.50 KiB"],
    [10 * 1024 * 1024, "10.0 MiB"],
    [200 * 1024 * 1024, "200 MiB"],
    [3 * 1024 ** 3, "3.00 GiB"],
    [1024 ** 5 * 2048, "2048 PiB"],
  ])("%d → %s", (n, s) => expect(formatBytes(n)).toBe(s));

  it("shows a dash for unknown sizes", () => {
    expect(formatBytes(null)).toBe("–");
    expect(formatBytes(undefined)).toBe("–");
    expect(formatBytes(Number.NaN)).toBe("–");
  });
});

describe("rates", () => {
  it("formats byte rates per second", () => {
    expect(formatByteRate(50 * 1024 * 1024)).toBe("50.0 MiB/s");
    expect(formatByteRate(null)).toBe("–");
    expect(formatByteRate(-1)).toBe("–");
  });
  it("formats row rates with thousands", () => {
    expect(formatRowRate(950)).toBe("950 rows/s");
    expect(formatRowRate(125_400)).toBe("125k rows/s");
    expect(formatRowRate(2_500_000)).toBe("2.5M rows/s");
    expect(formatRowRate(0)).toBe("–");
  });
});

describe("formatDuration", () => {
  it.each([
    [0.4, "<1 s"],
    [1, "1 s"],
    [59.4, "59 s"],
    [75, "1 min 15 s"],
    [3599, "59 min 59 s"],
    [3725, "1 h 2 min"],
    [2 * 86400 + 3600, "2 d 1 h"],
  ])("%d s → %s", (n, s) => expect(formatDuration(n)).toBe(s));
  it("has no duration for unknown, negative or infinite ETAs", () => {
    expect(formatDuration(null)).toBe("–");
    expect(formatDuration(-3)).toBe("–");
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe("–");
  });
});

describe("counts and percents", () => {
  it("groups thousands", () => expect(formatCount(1234567)).toBe("1,234,567"));
  it("clamps percents", () => {
    expect(formatPercent(104)).toBe("100 %");
    expect(formatPercent(-2)).toBe("0 %");
    expect(formatPercent(33.333, 1)).toBe("33.3 %");
  });
  it("measures seconds between times", () => {
    expect(secondsBetween("2026-01-01T00:00:00Z", "2026-01-01T00:01:30Z")).toBe(90);
    expect(secondsBetween(null)).toBeNull();
    expect(secondsBetween("2026-01-01T00:00:00Z", null, Date.parse("2026-01-01T00:00:10Z"))).toBe(10);
  });
});

describe("formatCompact", () => {
  it.each([
    [0, "0"],
    [950, "950"],
    [9999, "9999"],
    [12_000, "12k"],
    [4_281_312, "4.3M"],
    [40_000_000, "40M"],
    [1_200_000_000, "1.2G"],
    [0.5, "0.5"],
  ])("%d → %s", (n, s) => expect(formatCompact(n)).toBe(s));
});
