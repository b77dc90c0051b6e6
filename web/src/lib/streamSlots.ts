/**
 * Browsers open at most 6 HTTP/1.1 connections per origin, and every EventSource holds one for
 * as long as it is open: with many files processing at once, streams would starve the uploads'
 * PATCHes and the API calls. A few jobs stream; the others poll until a slot frees up.
 */

export class Slots {
  private used = 0;
  private waiters = new Set<() => void>();

  constructor(readonly size: number) {}

  tryAcquire(): boolean {
    if (this.used >= this.size) return false;
    this.used += 1;
    return true;
  }

  release(): void {
    this.used = Math.max(0, this.used - 1);
    for (const w of this.waiters) w();
  }

  /** Called whenever a slot is released (so a poller can switch to streaming at once). */
  onRelease(fn: () => void): () => void {
    this.waiters.add(fn);
    return () => this.waiters.delete(fn);
  }

  get inUse(): number {
    return this.used;
  }
}

export const streamSlots = new Slots(2);
