/**
 * Upload speed and ETA from progress samples over a sliding window: the rate of the last few
 * seconds follows the network as it changes, unlike the average since the start.
 */

export interface Sample {
  t: number; // ms
  bytes: number;
}

export class RateMeter {
  private samples: Sample[] = [];

  constructor(private readonly windowMs = 5000) {}

  /** Records a progress sample; a fall in bytes (a restart after a failure) starts over. */
  add(t: number, bytes: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last && bytes < last.bytes) this.samples = [];
    if (last && t === last.t) {
      last.bytes = bytes;
    } else {
      this.samples.push({ t, bytes });
    }
    const cutoff = t - this.windowMs;
    // Keep one sample at or before the window's start so the rate spans the whole window.
    while (this.samples.length > 2 && this.samples[1].t <= cutoff) this.samples.shift();
  }

  reset(): void {
    this.samples = [];
  }

  /** Bytes per second over the window, or null until two samples at least 250 ms apart exist. */
  rate(): number | null {
    if (this.samples.length < 2) return null;
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    const dt = (last.t - first.t) / 1000;
    if (dt < 0.25) return null;
    return Math.max(0, (last.bytes - first.bytes) / dt);
  }
}

/** Seconds left at `rate`; null when unknown or stalled, 0 when done. */
export function etaSeconds(done: number, total: number, rate: number | null): number | null {
  if (total <= 0) return null;
  const left = total - done;
  if (left <= 0) return 0;
  if (rate == null || rate <= 0 || !Number.isFinite(rate)) return null;
  return left / rate;
}
