import { describe, expect, it, vi } from "vitest";
import { Slots } from "./streamSlots";

describe("Slots", () => {
  it("hands out at most size slots and takes them back", () => {
    const s = new Slots(2);
    expect(s.tryAcquire()).toBe(true);
    expect(s.tryAcquire()).toBe(true);
    expect(s.tryAcquire()).toBe(false);
    s.release();
    expect(s.tryAcquire()).toBe(true);
    expect(s.inUse).toBe(2);
  });
  it("tells waiters when a slot frees up, until they unsubscribe", () => {
    const s = new Slots(1);
    const fn = vi.fn();
    const off = s.onRelease(fn);
    s.tryAcquire();
    s.release();
    expect(fn).toHaveBeenCalledTimes(1);
    off();
    s.release();
    expect(fn).toHaveBeenCalledTimes(1);
    expect(s.inUse).toBe(0);
  });
});
