import { beforeEach, describe, expect, it } from "vitest";
import { forgetKey, KEY_ITEM, loadKey, maskKey, saveKey, type KeyStorage } from "./keyStore";

class Mem implements KeyStorage {
  data = new Map<string, string>();
  getItem(k: string) {
    return this.data.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.data.set(k, v);
  }
  removeItem(k: string) {
    this.data.delete(k);
  }
}

describe("key storage", () => {
  let s: { session: Mem; local: Mem };
  beforeEach(() => {
    s = { session: new Mem(), local: new Mem() };
  });

  it("keeps the key in the tab only by default", () => {
    saveKey("  slk_abc  ", false, s);
    expect(s.session.getItem(KEY_ITEM)).toBe("slk_abc");
    expect(s.local.getItem(KEY_ITEM)).toBeNull();
    expect(loadKey(s)).toEqual({ key: "slk_abc", remembered: false });
  });

  it("remembers on the device when asked, and leaves no tab copy", () => {
    saveKey("slk_old", false, s);
    saveKey("slk_new", true, s);
    expect(s.local.getItem(KEY_ITEM)).toBe("slk_new");
    expect(s.session.getItem(KEY_ITEM)).toBeNull();
    expect(loadKey(s)).toEqual({ key: "slk_new", remembered: true });
  });

  it("no longer remembering removes the device copy", () => {
    saveKey("slk_1", true, s);
    saveKey("slk_1", false, s);
    expect(s.local.getItem(KEY_ITEM)).toBeNull();
  });

  it("forget removes the key everywhere", () => {
    s.session.setItem(KEY_ITEM, "a");
    s.local.setItem(KEY_ITEM, "b");
    forgetKey(s);
    expect(loadKey(s)).toBeNull();
  });

  it("works without storage (privacy modes)", () => {
    expect(loadKey({ session: null, local: null })).toBeNull();
    expect(() => saveKey("k", true, { session: null, local: null })).not.toThrow();
  });

  it("masks the key for display", () => {
    expect(maskKey("slk_0123456789abcdef")).toBe("slk_0123…cdef");
    expect(maskKey("short")).toBe("•••••");
  });
});
