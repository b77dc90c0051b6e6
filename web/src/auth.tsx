import { useQuery, useQueryClient } from "@tanstack/react-query";
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { api, setApiKey, setUnauthorizedHandler } from "./lib/api";
import { forgetKey, loadKey, saveKey } from "./lib/keyStore";
import type { Me } from "./lib/types";

interface Auth {
  apiKey: string | null;
  remembered: boolean;
  me: Me | null;
  loading: boolean;
  /** Reading the key's record failed for another reason than a bad key (server down, 5xx). */
  meError: Error | null;
  retryMe: () => void;
  /** Checks the key against GET /api/v1/me, then keeps it; throws the API error otherwise. */
  signIn: (key: string, remember: boolean) => Promise<Me>;
  signOut: (reason?: string) => void;
  signedOutReason: string | null;
}

const AuthContext = createContext<Auth | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const client = useQueryClient();
  const [stored, setStored] = useState(() => {
    const s = loadKey();
    setApiKey(s?.key ?? null);
    return s;
  });
  const [signedOutReason, setReason] = useState<string | null>(null);

  const signOut = useCallback(
    (reason?: string) => {
      forgetKey();
      try {
        sessionStorage.removeItem("sluice.uploadResults");
      } catch {
        /* storage disabled */
      }
      setApiKey(null);
      setStored(null);
      setReason(reason ?? null);
      client.clear();
    },
    [client],
  );

  useEffect(() => {
    setUnauthorizedHandler(() => signOut("Your key is no longer valid (revoked or expired): sign in again."));
    return () => setUnauthorizedHandler(null);
  }, [signOut]);

  const meQuery = useQuery({
    queryKey: ["me", stored?.key],
    queryFn: () => api<Me>("/api/v1/me"),
    enabled: !!stored,
    staleTime: 60_000,
    retry: (n, e) => (e as { status?: number }).status !== 401 && n < 2,
  });

  const signIn = useCallback(
    async (key: string, remember: boolean) => {
      const trimmed = key.trim();
      const me = await api<Me>("/api/v1/me", { key: trimmed, quiet401: true });
      saveKey(trimmed, remember);
      setApiKey(trimmed);
      client.setQueryData(["me", trimmed], me);
      setStored({ key: trimmed, remembered: remember });
      setReason(null);
      return me;
    },
    [client],
  );

  const value = useMemo<Auth>(
    () => ({
      apiKey: stored?.key ?? null,
      remembered: stored?.remembered ?? false,
      me: meQuery.data ?? null,
      loading: !!stored && meQuery.isPending && !meQuery.isError,
      meError: meQuery.error ?? null,
      retryMe: () => void meQuery.refetch(),
      signIn,
      signOut,
      signedOutReason,
    }),
    [stored, meQuery, signIn, signOut, signedOutReason],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): Auth {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error("useAuth outside AuthProvider");
  return ctx;
}
