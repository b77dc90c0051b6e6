import { useState, type FormEvent } from "react";
import { useAuth } from "../auth";
import { ApiError } from "../lib/api";
import { usePageTitle } from "../usePageTitle";

export function SignInPage() {
  usePageTitle("Sign in");
  const { signIn, signedOutReason } = useAuth();
  const [key, setKey] = useState("");
  const [remember, setRemember] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!key.trim()) {
      setError("Paste your API key first.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await signIn(key, remember);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setError("This key is not valid. Check that you pasted the whole key (it starts with slk_).");
      else setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main id="main" className="signin">
      <form className="card signin-card" onSubmit={submit} data-testid="sign-in-form" noValidate>
        <h1>Sluice</h1>
        <p className="muted">Upload spreadsheets and CSV files of any size, and get them as tables.</p>
        {signedOutReason ? (
          <p className="alert alert-info" role="status">
            {signedOutReason}
          </p>
        ) : null}
        <label htmlFor="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autoComplete="off"
          spellCheck={false}
          autoFocus
          value={key}
          onChange={(e) => setKey(e.target.value)}
          placeholder="slk_…"
          aria-describedby="api-key-help"
          aria-invalid={!!error}
          data-testid="api-key-input"
        />
        <p id="api-key-help" className="muted small">
          An administrator creates keys with <code>sluice keys create NAME</code>.
        </p>
        <label className="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.target.checked)} data-testid="remember-key" />
          Remember on this device
        </label>
        <p className="muted small">
          {remember ? "The key stays in this browser until you sign out." : "The key is forgotten when this tab closes."}
        </p>
        {error ? (
          <p className="alert alert-error" role="alert" data-testid="sign-in-error">
            {error}
          </p>
        ) : null}
        <button type="submit" className="primary" disabled={busy} data-testid="sign-in-submit">
          {busy ? "Checking…" : "Sign in"}
        </button>
        <p className="small">
          <a href="/schema/swagger" target="_blank" rel="noopener">
            API docs
          </a>
        </p>
      </form>
    </main>
  );
}
