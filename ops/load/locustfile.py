"""The load test's users: uploaders (single shot, chunked, tus), readers (file listings) and SSE
watchers (a processed upload followed on its job's event stream to the end). Small files only.

Run it with ops/load/run (which checks the target is on this machine and reports the figures);
the key comes from SLUICE_KEY.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import time
import uuid

from locust import HttpUser, between, events, task

KEY = os.environ.get("SLUICE_KEY", "")
HEADER = "id,name,amount,when\n"
TUS = {"Tus-Resumable": "1.0.0"}
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
SSE_TIMEOUT = 120.0


@events.test_start.add_listener
def _check_key(environment, **_: object) -> None:  # type: ignore[no-untyped-def]
    if not KEY:
        raise SystemExit("set SLUICE_KEY (ops/load/run reads the stack's development key)")


def csv_body(rows: int) -> bytes:
    """A small CSV, different every time (so checksums and names never repeat)."""
    salt = uuid.uuid4().hex[:8]
    lines = [HEADER] + [f"{i},{salt}-{i},{random.randint(0, 99999) / 100},2026-11-{1 + i % 28:02d}\n" for i in range(rows)]
    return "".join(lines).encode()


class SluiceUser(HttpUser):
    abstract = True
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {KEY}"


class Uploader(SluiceUser):
    weight = 5

    @task(3)
    def single_shot(self) -> None:
        body = csv_body(random.randint(200, 4000))
        self.client.put(
            f"/api/v1/files/load-{uuid.uuid4().hex[:12]}.csv",
            params={"process": "false"},
            data=body,
            headers={"X-Content-SHA256": hashlib.sha256(body).hexdigest()},
            name="PUT /files/{name}",
        )

    @task(2)
    def chunked(self) -> None:
        body = csv_body(random.randint(200, 4000))
        created = self.client.post(
            "/api/v1/uploads",
            json={"filename": "load-chunked.csv", "size": len(body), "chunk_size": len(body), "process": False},
            name="POST /uploads",
        )
        if created.status_code != 201:
            return
        upload_id = created.json()["id"]
        self.client.put(
            f"/api/v1/uploads/{upload_id}/chunks/0",
            data=body,
            headers={"X-Chunk-SHA256": hashlib.sha256(body).hexdigest()},
            name="PUT /uploads/{id}/chunks/{index}",
        )
        self.client.post(f"/api/v1/uploads/{upload_id}/complete", name="POST /uploads/{id}/complete")

    @task(2)
    def tus(self) -> None:
        body = csv_body(random.randint(200, 4000))
        metadata = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in {"filename": "load-tus.csv", "process": "false"}.items()
        )
        created = self.client.post(
            "/api/v1/tus/",
            headers={**TUS, "Upload-Length": str(len(body)), "Upload-Metadata": metadata},
            name="POST /tus/",
        )
        if created.status_code != 201:
            return
        with self.client.patch(
            created.headers["Location"],
            data=body,
            headers={**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
            name="PATCH /tus/{id}",
            catch_response=True,
        ) as patched:
            if patched.status_code == 204 and not patched.headers.get("Sluice-File-Id"):
                patched.failure("the last PATCH answered no Sluice-File-Id")


class Reader(SluiceUser):
    weight = 3

    @task(3)
    def list_files(self) -> None:
        with self.client.get("/api/v1/files", params={"limit": 50}, name="GET /files", catch_response=True) as page:
            if page.status_code == 200:
                self.last = [item["id"] for item in page.json()["items"]]

    @task(1)
    def one_file(self) -> None:
        if getattr(self, "last", None):
            self.client.get(f"/api/v1/files/{random.choice(self.last)}", name="GET /files/{id}")


class Watcher(SluiceUser):
    """Uploads a file to be processed and follows its job's event stream to the terminal event."""

    weight = 2
    wait_time = between(1.0, 3.0)

    @task
    def watch_a_job(self) -> None:
        body = csv_body(random.randint(500, 3000))
        stored = self.client.put(
            f"/api/v1/files/load-watched-{uuid.uuid4().hex[:12]}.csv",
            params={"process": "true"},
            data=body,
            name="PUT /files/{name} (processed)",
        )
        if stored.status_code != 201 or not stored.json().get("job_id"):
            return
        job_id = stored.json()["job_id"]
        started = time.perf_counter()
        seen: list[str] = []
        error: Exception | None = None
        try:
            stream = self.client.get(
                f"/api/v1/jobs/{job_id}/events", stream=True, timeout=SSE_TIMEOUT, name="GET /jobs/{id}/events"
            )
            try:
                stream.raise_for_status()
                for line in stream.iter_lines(decode_unicode=True):
                    if line.startswith("event:"):
                        seen.append(line.split(":", 1)[1].strip())
                        if seen[-1] in TERMINAL:
                            break
            finally:
                stream.close()
            if not seen or seen[0] != "snapshot" or seen[-1] not in TERMINAL:
                raise AssertionError(f"the stream ended after {seen}")
            if seen[-1] != "completed":
                raise AssertionError(f"the job ended {seen[-1]}")
        except Exception as exc:  # every failure counts as one failed stream in the report
            error = exc
        events.request.fire(
            request_type="SSE",
            name="job stream, snapshot to completed",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=len(json.dumps(seen)),
            exception=error,
            context={},
        )
