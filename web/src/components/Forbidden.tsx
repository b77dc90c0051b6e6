import { Link } from "react-router";

export function Forbidden() {
  return (
    <section className="page narrow" data-testid="forbidden">
      <h1>403 · Not for this key</h1>
      <p>The Operations page needs an admin key. Your key can upload, list and process its own files.</p>
      <p>
        Ask an administrator for an admin key (<code>sluice keys create NAME --admin</code>), or go back to{" "}
        <Link to="/">Upload</Link>.
      </p>
    </section>
  );
}
