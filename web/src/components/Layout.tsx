import { useEffect, useRef } from "react";
import { NavLink, Outlet, useLocation } from "react-router";
import { useAuth } from "../auth";

export function Layout() {
  const { me, signOut, remembered } = useAuth();
  const { pathname } = useLocation();
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  useEffect(() => {
    // A route change moves focus to the new page (as a page load would), not on the first render.
    if (first.current) first.current = false;
    else main.current?.focus();
  }, [pathname]);
  return (
    <div className="app">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <NavLink to="/" className="brand" aria-label="Sluice home">
          Sluice
        </NavLink>
        <nav aria-label="Main" className="mainnav">
          <NavLink to="/" end data-testid="nav-upload">
            Upload
          </NavLink>
          <NavLink to="/files" data-testid="nav-files">
            Files
          </NavLink>
          {me?.admin ? (
            <NavLink to="/operations" data-testid="nav-operations">
              Operations
            </NavLink>
          ) : null}
          <a href="/schema/swagger" target="_blank" rel="noopener" data-testid="nav-api-docs">
            API docs
          </a>
        </nav>
        <div className="who" data-testid="whoami">
          {me ? (
            <>
              <span title={`Key ${me.prefix}… · owner ${me.owner_id}`}>
                <strong data-testid="key-name">{me.name}</strong>
                {me.admin ? <span className="badge badge-admin">admin</span> : null}
                <span className="muted small"> · owner <code data-testid="key-owner">{me.owner_id.slice(0, 8)}</code></span>
                {remembered ? <span className="muted small"> · remembered</span> : null}
              </span>
            </>
          ) : null}
          <button type="button" onClick={() => signOut()} data-testid="sign-out">
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1} ref={main}>
        <Outlet />
      </main>
    </div>
  );
}
