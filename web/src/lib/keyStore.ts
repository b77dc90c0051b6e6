/** Where the API key lives: this tab only (sessionStorage) or this device (localStorage). */

export const KEY_ITEM = "sluice.apiKey";

export interface KeyStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface StoredKey {
  key: string;
  remembered: boolean;
}

function storages(): { session: KeyStorage | null; local: KeyStorage | null } {
  // Storage access throws in some privacy modes; the app then simply keeps the key in memory.
  const get = (name: "sessionStorage" | "localStorage"): KeyStorage | null => {
    try {
      return typeof window === "undefined" ? null : window[name];
    } catch {
      return null;
    }
  };
  return { session: get("sessionStorage"), local: get("localStorage") };
}

export function loadKey(s = storages()): StoredKey | null {
  const tab = s.session?.getItem(KEY_ITEM);
  if (tab) return { key: tab, remembered: false };
  const device = s.local?.getItem(KEY_ITEM);
  if (device) return { key: device, remembered: true };
  return null;
}

/** Keeps the key in exactly one place, so "forget" never leaves a copy behind. */
export function saveKey(key: string, remember: boolean, s = storages()): void {
  const trimmed = key.trim();
  if (remember) {
    s.local?.setItem(KEY_ITEM, trimmed);
    s.session?.removeItem(KEY_ITEM);
  } else {
    s.session?.setItem(KEY_ITEM, trimmed);
    s.local?.removeItem(KEY_ITEM);
  }
}

export function forgetKey(s = storages()): void {
  s.session?.removeItem(KEY_ITEM);
  s.local?.removeItem(KEY_ITEM);
}

/** Shown in the header: never the whole secret. */
export function maskKey(key: string): string {
  if (key.length <= 10) return "•".repeat(key.length);
  return `${key.slice(0, 8)}…${key.slice(-4)}`;
}
