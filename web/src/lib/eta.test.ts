import { describe, expect, it } from "vitest";
import { etaSeconds, RateMeter } from "./eta";

describe("RateMeter", () => {
  it("has no rate until two samples 250 ms apart", () => {
    const m = new RateMeter();
    expect(m.rate()).toBeNull();
    m.add(0, 0);
    m.add(100, 1000);
    expect(m.rate()).toBeNull();
    m.add(1000, 10_000);
    expect(m.rate()).toBe(10_000);
  });

  it("follows the recent rate, not the average since the start", () => {
    const m = new RateMeter(5000);
    // 1 MB/s for 10 s, then 4 MB/s for 10 s.
    for (let t = 0; t <= 10; t++) m.add(t * 1000, t * 1_000_000);
    for (let t = 11; t <= 20; t++) m.add(t * 1000, 10_000_000 + (t - 10) * 4_000_000);
    expect(m.rate()).toBeCloseTo(4_000_000, -3);
  });

  it("starts over when the bytes go down (a restarted upload)", () => {
    const m = new RateMeter();
    m.add(0, 0);
    m.add(1000, 5_000_000);
    m.add(2000, 1_000_000);
    expect(m.rate()).toBeNull();
    m.add(3000, 3_000_000);
    expect(m.rate()).toBe(2_000_000);
  });

  it("reset forgets the samples (pause)", () => {
    const m = new RateMeter();
    m.add(0, 0);
    m.add(1000, 100);
    m.reset();
    expect(m.rate()).toBeNull();
  });
});

describe("etaSeconds", () => {
  it("is what is left over the rate", () => expect(etaSeconds(25, 100, 5)).toBe(15));
  it("is 0 when done", () => expect(etaSeconds(100, 100, 0)).toBe(0));
  it("is unknown while stalled or without a rate", () => {
    expect(etaSeconds(10, 100, 0)).toBeNull();
    expect(etaSeconds(10, 100, null)).toBeNull();
    expect(etaSeconds(0, 0, 10)).toBeNull();
  });
});
