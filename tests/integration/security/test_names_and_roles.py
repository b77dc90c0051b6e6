"""Hostile names through headers, rename, select and cast, on an API and a worker running as the
non-superuser roles ``sluice migrate`` creates; stream links signed with the server secret."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx
import pytest

from app.auth import hash_key, stream_token
from db.settings import Settings
from tests.integration.jobs.conftest import wait_job
from tests.integration.security.conftest import RoleStack
from tests.support.servers import REPO, settings_env

INJECTION = 'a",(SELECT string_agg(key_hash, \',\') FROM api_keys) AS "z'
HOSTILE_HEADERS = [
    INJECTION,
    "x; DROP TABLE files; --",
    "a--b",
    "back\\slash",
    "Größe",
    "é" * 32,
    "a" * 63,
    "b" * 64,
]
VALUES = ["v-quote\"d", "v;semi", "v--dash", "v\\back", "v-größe", "v-é", "v-63", "v-64"]


def hostile_csv() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HOSTILE_HEADERS)
    writer.writerow(VALUES)
    writer.writerow([v + "2" for v in VALUES])
    return out.getvalue().encode()


async def upload(client: httpx.AsyncClient, body: bytes, *, process: bool) -> dict[str, object]:
    response = await client.put("/api/v1/files/hostile.csv", params={"process": str(process).lower()}, content=body)
    assert response.status_code == 201, response.text
    return response.json()


async def post_job(client: httpx.AsyncClient, file_id: object, mapping: dict[str, object]) -> httpx.Response:
    return await client.post("/api/v1/jobs", json={"file_ids": [file_id], "options": {"mapping": mapping}})


async def run_job(client: httpx.AsyncClient, file_id: object, mapping: dict[str, object]) -> dict[str, object]:
    response = await post_job(client, file_id, mapping)
    assert response.status_code == 201, response.text
    return await wait_job(client, response.json()["jobs"][0]["id"])


async def test_hostile_headers_are_stored_as_data_by_the_roles(role_stack: RoleStack, role_client: httpx.AsyncClient) -> None:
    record = await upload(role_client, hostile_csv(), process=True)
    job = await wait_job(role_client, record["job_id"])
    assert job["state"] == "completed", job["error"]

    rows = (await role_client.get(f"/api/v1/files/{record['id']}/rows")).json()
    names = [c["name"] for c in rows["columns"]]
    assert names == [
        "a_select_string_agg_key_hash_from_api_keys_as_z",
        "x_drop_table_files",
        "a_b",
        "back_slash",
        "größe",
        "é" * 31,
        "a" * 63,
        "b" * 63,
    ]
    assert rows["rows"] == [VALUES, [v + "2" for v in VALUES]]
    assert not any("key_hash" in str(v) or len(str(v)) == 64 for row in rows["rows"] for v in row)

    # A header text selects, renames and casts its column; what is stored is still only the file's values.
    job = await run_job(
        role_client,
        record["id"],
        {"select": [INJECTION, "back\\slash"], "rename": {INJECTION: "first"}, "cast": {"back\\slash": "text"}},
    )
    assert job["state"] == "completed", job["error"]
    rows = (await role_client.get(f"/api/v1/files/{record['id']}/rows")).json()
    assert [c["name"] for c in rows["columns"]] == ["first", "back_slash"]
    assert rows["rows"] == [[VALUES[0], VALUES[3]], [VALUES[0] + "2", VALUES[3] + "2"]]

    assert (await role_client.delete(f"/api/v1/files/{record['id']}")).status_code == 204
    owner = await asyncpg.connect(role_stack.owner_url.replace("+asyncpg", ""))
    try:
        table = f"datasets.f_{uuid.UUID(str(record['id'])).hex}"
        assert await owner.fetchval("SELECT to_regclass($1)", table) is None
        assert await owner.fetchval("SELECT count(*) FROM api_keys") >= 1
    finally:
        await owner.close()


@pytest.mark.parametrize(
    "target",
    [INJECTION, "Total", "x; DROP TABLE files; --", "a--b", "back\\slash", "_row", "", " total", "1st", "b" * 64, "é" * 32],
)
async def test_a_rename_target_that_is_not_a_column_name_is_refused_before_a_job_is_queued(
    role_client: httpx.AsyncClient, target: str
) -> None:
    record = await upload(role_client, hostile_csv(), process=False)
    response = await post_job(role_client, record["id"], {"rename": {"a--b": target}})
    assert response.status_code == 422, response.text
    assert repr(target) in response.json()["detail"]
    jobs = (await role_client.get("/api/v1/jobs")).json()
    assert all(job["file_id"] != record["id"] for job in jobs["items"])


async def test_names_at_the_limits_and_repeats(role_client: httpx.AsyncClient) -> None:
    record = await upload(role_client, hostile_csv(), process=False)
    job = await run_job(role_client, record["id"], {"rename": {"a--b": "c" * 63, "Größe": "é" * 31 + "e"}})
    assert job["state"] == "completed", job["error"]
    columns = [c["name"] for c in (await role_client.get(f"/api/v1/files/{record['id']}/rows")).json()["columns"]]
    assert "c" * 63 in columns and "é" * 31 + "e" in columns

    repeated = await post_job(role_client, record["id"], {"rename": {"a--b": "same", "Größe": "same"}})
    assert repeated.status_code == 422 and "'same'" in repeated.json()["detail"]
    clash = await run_job(role_client, record["id"], {"rename": {"a--b": "back_slash"}})
    assert clash["state"] == "failed" and "back_slash" in str(clash["error"])
    nul = await post_job(role_client, record["id"], {"select": ["a\x00b"]})
    assert nul.status_code == 422 and "NUL" in nul.json()["detail"]
    empty = await post_job(role_client, record["id"], {"select": []})
    assert empty.status_code == 422 and "select" in empty.json()["detail"]


@pytest.mark.parametrize("where", ["select", "cast"])
async def test_a_hostile_name_the_file_does_not_have_fails_the_job_naming_it(
    role_client: httpx.AsyncClient, where: str
) -> None:
    record = await upload(role_client, hostile_csv(), process=False)
    bad = 'z",(SELECT 1) AS "y; --'
    mapping = {"select": [bad]} if where == "select" else {"cast": {bad: "text"}}
    job = await run_job(role_client, record["id"], mapping)
    assert job["state"] == "failed"
    assert repr(bad) in str(job["error"]) and "back_slash" in str(job["error"])


async def test_the_roles_are_not_superusers_and_hold_only_what_they_need(
    role_stack: RoleStack, role_client: httpx.AsyncClient
) -> None:
    record = await upload(role_client, hostile_csv(), process=True)
    assert (await wait_job(role_client, record["job_id"]))["state"] == "completed"
    table = f"datasets.f_{uuid.UUID(str(record['id'])).hex}"
    api = await asyncpg.connect(role_stack.api_dsn)
    worker = await asyncpg.connect(role_stack.worker_dsn)
    try:
        for conn, role in ((api, "sluice_api"), (worker, "sluice_worker")):
            assert await conn.fetchval("SELECT current_user") == role
            flags = await conn.fetchrow(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = current_user"
            )
            assert not any(flags.values())
            owned = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user")
            assert owned == 0
            for statement in (
                "SELECT * FROM alembic_version",
                "ALTER TABLE api_keys ADD COLUMN x int",
                "DROP TABLE files",
                "CREATE SCHEMA intruder",
                "CREATE TABLE public.intruder (x int)",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        assert await api.fetchval(f"SELECT count(*) FROM {table}") == 2
        for statement in (f"INSERT INTO {table} (_row) VALUES (99)", f"DROP TABLE {table}", "CREATE TABLE datasets.x (y int)"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await api.execute(statement)
        assert await worker.fetchval("SELECT tableowner FROM pg_tables WHERE schemaname = 'datasets' LIMIT 1") == "sluice_worker"
    finally:
        await api.close()
        await worker.close()


async def test_stream_links_are_signed_with_the_server_secret_and_die_with_their_key(role_stack: RoleStack) -> None:
    key = await role_stack.new_key()
    async with role_stack.client(key) as http:
        record = await upload(http, hostile_csv(), process=True)
        path = f"/api/v1/jobs/{record['job_id']}/events"
        link = await http.post("/api/v1/events/links", json={"path": path})
        assert link.status_code == 201, link.text
        token = link.json()["url"].split("token=")[1]
        key_id, expires = uuid.UUID(hex=token.split(".")[0]), int(token.split(".")[1])
        async with httpx.AsyncClient(base_url=role_stack.api.url, timeout=10) as browser:
            assert (await browser.get(link.json()["url"])).status_code == 200
            # Whoever can read api_keys (the injection above read key_hash) cannot sign a link.
            forged = [
                stream_token(hash_key(key), key_id, path, expires),
                stream_token("x" * 64, key_id, path, expires),
            ]
            owner = await asyncpg.connect(role_stack.owner_url.replace("+asyncpg", ""))
            try:
                stored_hash = await owner.fetchval("SELECT key_hash FROM api_keys WHERE id = $1", key_id)
                forged.append(stream_token(stored_hash, key_id, path, expires))
                for token in forged:
                    answer = await browser.get(f"{path}?token={token}")
                    assert answer.status_code == 401, answer.text
                await owner.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
            finally:
                await owner.close()
            assert (await browser.get(link.json()["url"])).status_code == 401


@pytest.mark.parametrize("schema", ['datasets"; DROP TABLE files; --', "Datasets", "public", "pg_catalog", "a" * 64, "1x"])
def test_sluice_refuses_to_start_with_a_schema_setting_that_is_not_a_plain_name(schema: str) -> None:
    env = settings_env(Settings(secret_key="s" * 32)) | {"SLUICE_DATASET_SCHEMA": schema}
    for command in (["serve", "--port", "1"], ["worker"], ["migrate"]):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *command], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, (command, done.stderr)
        assert "SLUICE_DATASET_SCHEMA" in done.stderr and repr(schema) in done.stderr


def test_sluice_serve_refuses_to_start_without_a_secret_key() -> None:
    env = settings_env(Settings()) | {"SLUICE_SECRET_KEY": ""}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "1"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "SLUICE_SECRET_KEY" in done.stderr
    assert time.monotonic() - started < 30
    short = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "1"],
        env=env | {"SLUICE_SECRET_KEY": "short"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode == 2 and "32 characters" in short.stderr
