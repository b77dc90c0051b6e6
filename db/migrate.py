"""Runs the Alembic migrations programmatically (the CLI, the tests and compose's migrate job),
prepares the dataset schema, and creates the database roles the API and the workers run as.

Roles (cluster-wide in PostgreSQL; grants are per database):

- ``sluice_api``: reads and writes the app tables, reads the dataset tables, and drops a file's
  dataset table only through ``sluice_drop_dataset(file id)``.
- ``sluice_worker``: reads and writes the app tables, creates the dataset tables (it owns them).

Neither is a superuser, neither owns an app table or may change one's structure; whoever runs
``sluice migrate`` (the database owner) does that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from db.sql import qualified, quote_ident

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
API_ROLE = "sluice_api"
WORKER_ROLE = "sluice_worker"
DROP_DATASET = "sluice_drop_dataset"
"""``public.sluice_drop_dataset(file_id uuid)``: drops that file's table, as the dataset tables' owner."""

# The schema name is a literal inside the function (format's %L, server side); the table name is
# built from a uuid, so the function can drop nothing but a file's dataset table.
_DROP_FUNCTION_DDL = """
SELECT format(
    $ddl$CREATE OR REPLACE FUNCTION public.sluice_drop_dataset(file_id uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
    BEGIN
        EXECUTE format('DROP TABLE IF EXISTS %%I.%%I', %L, 'f_' || replace(file_id::text, '-', ''));
    END
    $body$$ddl$,
    $1::text
)
"""


def alembic_config(database_url: str) -> Config:
    # Imported here: the API imports this module for DROP_DATASET only, and Alembic (with Mako and
    # Pygments) would cost every API process about 9 MiB it never uses.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url)
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head", *, dataset_schema: str = "datasets") -> None:
    """Migrate the app tables, then make sure the dataset schema and its drop function exist."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)
    asyncio.run(_on(database_url, lambda conn: _prepare_datasets(conn, dataset_schema)))


def grant_roles(database_url: str, dataset_schema: str, *, api_password: str, worker_password: str) -> None:
    """Create (or update) the LOGIN roles ``sluice_api`` and ``sluice_worker`` and grant them what they need here.

    The dataset tables and the drop function pass to ``sluice_worker``: from then on the workers
    must connect as it. Idempotent: run by every ``sluice migrate`` given the passwords.
    """
    asyncio.run(_on(database_url, lambda conn: _grant(conn, dataset_schema, api_password, worker_password)))


async def _on(database_url: str, work: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=10)
    try:
        await work(conn)
    finally:
        await conn.close()


async def _prepare_datasets(conn: asyncpg.Connection, schema: str) -> None:
    # The workers may not create schemas (no CREATE on the database), so the schema is made here.
    exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema)
    if not exists:
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        except (asyncpg.UniqueViolationError, asyncpg.DuplicateSchemaError):
            pass  # another migrate created it at the same moment
    async with conn.transaction():
        # Serialises concurrent migrates: CREATE OR REPLACE FUNCTION races with itself.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sluice_drop_dataset'))")
        await conn.execute(await conn.fetchval(_DROP_FUNCTION_DDL, schema))
        await conn.execute("REVOKE ALL ON FUNCTION public.sluice_drop_dataset(uuid) FROM PUBLIC")


async def _grant(conn: asyncpg.Connection, schema: str, api_password: str, worker_password: str) -> None:
    api, worker = quote_ident(API_ROLE), quote_ident(WORKER_ROLE)
    both = f"{api}, {worker}"
    for role, password in ((API_ROLE, api_password), (WORKER_ROLE, worker_password)):
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role):
            try:
                await conn.execute(f"CREATE ROLE {quote_ident(role)} NOLOGIN")
            except asyncpg.DuplicateObjectError:
                pass  # another migrate created it at the same moment
        # The password is quoted by the server (format's %L); it never passes through Python's quoting.
        alter = await conn.fetchval(
            "SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            " PASSWORD %L', $1::text, $2::text)",
            role,
            password,
        )
        await conn.execute(alter)
    database = quote_ident(await conn.fetchval("SELECT current_database()"))
    datasets = quote_ident(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sluice_grant_roles'))")
        await conn.execute(f"GRANT CONNECT ON DATABASE {database} TO {both}")
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {both}")
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {both}")
        await conn.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {both}")
        # The migration bookkeeping is the owner's alone.
        await conn.execute(f"REVOKE ALL ON TABLE public.alembic_version FROM {both}")
        await conn.execute(f"GRANT USAGE ON SCHEMA {datasets} TO {api}")
        await conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {datasets} TO {worker}")
        await conn.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {worker} IN SCHEMA {datasets} GRANT SELECT ON TABLES TO {api}"
        )
        # Tables made before the roles existed: the worker must own them to replace them.
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        for row in tables:
            table = qualified(schema, row["tablename"])
            await conn.execute(f"ALTER TABLE {table} OWNER TO {worker}")
            await conn.execute(f"GRANT SELECT ON TABLE {table} TO {api}")
        await conn.execute(f"ALTER FUNCTION public.{quote_ident(DROP_DATASET)}(uuid) OWNER TO {worker}")
        await conn.execute(f"GRANT EXECUTE ON FUNCTION public.{quote_ident(DROP_DATASET)}(uuid) TO {api}")
