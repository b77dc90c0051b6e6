/** A clock the throttle runs on; tests pass a fake one. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface Throttled {
  /** Run now if the last run is `intervalMs` old, else once when it is (calls in between merge). */
  (): void;
  /** Run now whatever the interval (a change the user must see in this event), dropping a pending run. */
  flush(): void;
  cancel(): void;
}

/**
 * Leading and trailing throttle: the first call of a burst runs at once, the rest collapse into one
 * run at the end of the interval. Uppy reports progress many times a second while bytes flow; the
 * page re-renders at most 1000 / intervalMs times a second from it.
 */
export function throttle(fn: () => void, intervalMs: number, clock: Clock = realClock): Throttled {
  let last = -Infinity;
  let pending: unknown = null;
  const run = () => {
    pending = null;
    last = clock.now();
    fn();
  };
  const throttled = (() => {
    if (pending !== null) return;
    const wait = last + intervalMs - clock.now();
    if (wait <= 0) run();
    else pending = clock.setTimeout(run, wait);
  }) as Throttled;
  throttled.cancel = () => {
    if (pending !== null) clock.clearTimeout(pending);
    pending = null;
  };
  throttled.flush = () => {
    throttled.cancel();
    run();
  };
  return throttled;
}

/** The part of Uppy the page follows (its `state-update` event). */
export interface StateEmitter {
  on(event: "state-update", fn: () => void): unknown;
  off(event: "state-update", fn: () => void): unknown;
}

export interface Following {
  /** Stop following; a pending call is dropped. */
  stop(): void;
  /** Call `onChange` now (a change the user made must show in this event, not a quarter second later). */
  flush(): void;
}

/** Calls `onChange` when the uploader's state changed, at most once per `intervalMs`. */
export function followState(source: StateEmitter, onChange: () => void, intervalMs: number, clock: Clock = realClock): Following {
  const changed = throttle(onChange, intervalMs, clock);
  source.on("state-update", changed);
  return {
    stop: () => {
      source.off("state-update", changed);
      changed.cancel();
    },
    flush: () => changed.flush(),
  };
}
