import { lazy, Suspense } from "react";
import { Link, Route, Routes } from "react-router";
import { useAuth } from "./auth";
import { Layout } from "./components/Layout";
import { Forbidden } from "./components/Forbidden";
import { ErrorBox, Loading } from "./components/ui";
import { FilePage } from "./pages/FilePage";
import { FilesPage } from "./pages/FilesPage";
import { SignInPage } from "./pages/SignInPage";

// The dashboard (and uPlot) load only when an admin opens it.
const OperationsPage = lazy(() => import("./pages/OperationsPage"));
// The uploader (Uppy) is the largest piece: the sign-in page and the shell load without it.
const UploadPage = lazy(() => import("./pages/UploadPage"));

function NotFound() {
  return (
    <section className="page narrow" data-testid="not-found">
      <h1>Page not found</h1>
      <p>
        Nothing lives at this address. Go to <Link to="/">Upload</Link> or <Link to="/files">Files</Link>.
      </p>
    </section>
  );
}

function AdminOnly() {
  const { me } = useAuth();
  if (!me) return <Loading what="your key" />;
  if (!me.admin) return <Forbidden />;
  return (
    <Suspense fallback={<Loading what="the operations dashboard" />}>
      <OperationsPage />
    </Suspense>
  );
}

export function App() {
  const { apiKey, loading, me, meError, retryMe, signOut } = useAuth();
  if (!apiKey) return <SignInPage />;
  if (!me && meError)
    return (
      <main id="main" className="signin">
        <div className="card signin-card" data-testid="me-error">
          <h1>Sluice</h1>
          <ErrorBox error={meError} />
          <div className="actions">
            <button type="button" className="primary" onClick={retryMe}>
              Try again
            </button>
            <button type="button" onClick={() => signOut()}>
              Sign out
            </button>
          </div>
        </div>
      </main>
    );
  if (loading && !me) return <Loading what="your key" />;
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route
          index
          element={
            <Suspense fallback={<Loading what="the uploader" />}>
              <UploadPage />
            </Suspense>
          }
        />
        <Route path="files" element={<FilesPage />} />
        <Route path="files/:fileId" element={<FilePage />} />
        <Route path="operations" element={<AdminOnly />} />
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}
