import { describe, expect, it } from "vitest";
import { followState, throttle, type Clock } from "./throttle";

/** A clock whose time moves only when told; timers fire as it passes them. */
class FakeClock implements Clock {
  t = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  now() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number) {
    const id = this.next++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown) {
    this.timers.delete(handle as number);
  }
  advance(ms: number) {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
  }
  get pending() {
    return this.timers.size;
  }
}

describe("throttle", () => {
  it("runs the first call at once and merges a burst into one trailing run", () => {
    const clock = new FakeClock();
    let runs = 0;
    const t = throttle(() => runs++, 250, clock);
    t();
    expect(runs).toBe(1);
    for (let i = 0; i < 100; i++) {
      clock.advance(2);
      t();
    }
    expect(runs).toBe(1);
    clock.advance(50);
    expect(runs).toBe(2);
    expect(clock.pending).toBe(0);
  });

  it("renders at most 4 times a second under 1,000 progress events a second", () => {
    const clock = new FakeClock();
    const times: number[] = [];
    const t = throttle(() => times.push(clock.now()), 250, clock);
    for (let i = 0; i < 10_000; i++) {
      t();
      clock.advance(1);
    }
    clock.advance(250);
    // 10 s of events: about 40 runs, never two closer than 250 ms, and the last state is shown.
    expect(times.length).toBeGreaterThanOrEqual(40);
    expect(times.length).toBeLessThanOrEqual(41);
    for (let i = 1; i < times.length; i++) expect(times[i] - times[i - 1]).toBeGreaterThanOrEqual(250);
    expect(times[times.length - 1]).toBeGreaterThanOrEqual(9_999);
  });

  it("runs at once again after a quiet interval", () => {
    const clock = new FakeClock();
    let runs = 0;
    const t = throttle(() => runs++, 250, clock);
    t();
    clock.advance(1000);
    t();
    expect(runs).toBe(2);
    expect(clock.pending).toBe(0);
  });

  it("cancel drops a pending run; flush runs now and drops it", () => {
    const clock = new FakeClock();
    let runs = 0;
    const t = throttle(() => runs++, 250, clock);
    t();
    t();
    t.cancel();
    clock.advance(1000);
    expect(runs).toBe(1);
    t();
    clock.advance(10);
    t();
    t.flush();
    expect(runs).toBe(3);
    clock.advance(1000);
    expect(runs).toBe(3);
  });
});

describe("followState with a real Uppy", () => {
  it("reads Uppy's state at most 4 times a second while progress events pour in, and the last one", async () => {
    const { default: Uppy } = await import("@uppy/core");
    const uppy = new Uppy();
    const id = uppy.addFile({ name: "big.csv", type: "text/csv", data: new Blob(["x".repeat(1000)]) });
    const clock = new FakeClock();
    const seen: number[] = [];
    const follow = followState(uppy, () => seen.push(uppy.getFile(id).progress.bytesUploaded || 0), 250, clock);
    uppy.emit("upload-start", [uppy.getFile(id)]);
    // 2 s of progress at one event a millisecond, as XHR upload progress can fire.
    for (let sent = 1; sent <= 1000; sent++) {
      uppy.emit("upload-progress", uppy.getFile(id), { uploadStarted: Date.now(), bytesUploaded: sent, bytesTotal: 10_000 });
      clock.advance(2);
    }
    clock.advance(250);
    expect(seen.length).toBeGreaterThanOrEqual(8);
    expect(seen.length).toBeLessThanOrEqual(10);
    expect(seen.at(-1)).toBe(1000);
    follow.stop();
    uppy.emit("upload-progress", uppy.getFile(id), { uploadStarted: Date.now(), bytesUploaded: 2000, bytesTotal: 10_000 });
    clock.advance(1000);
    expect(seen.length).toBeLessThanOrEqual(10);
    uppy.destroy();
  });
});
