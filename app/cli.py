"""The ``sluice`` command: serve, worker, migrate, keys, owners quota (and upload, the client)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from db.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from db.models import ApiKey


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if not settings.secret_key:
        print(
            "sluice serve: set SLUICE_SECRET_KEY (at least 32 characters, the same on every API process, e.g."
            " `openssl rand -hex 32`); it signs stream links. ops/stack keeps one in its data dir.",
            file=sys.stderr,
        )
        return 2

    # glibc gives threads that allocate at the same time their own malloc arenas (up to 8 per core),
    # and what the upload threads free stays spread over them. Two arenas keep the API's peak lower
    # at no CPU cost measured. The variable reaches --workers processes (glibc reads it at their
    # start); mallopt applies it to this process, before uvicorn starts a thread.
    if "MALLOC_ARENA_MAX" not in os.environ:
        import contextlib
        import ctypes

        os.environ["MALLOC_ARENA_MAX"] = "2"
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).mallopt(-8, 2)  # M_ARENA_MAX; not glibc: nothing to do

    uvicorn.run(
        "app.asgi:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_keep_alive=30,
        timeout_graceful_shutdown=settings.shutdown_grace,
        proxy_headers=True,
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
    )
    return 0


def _worker(args: argparse.Namespace, _: Settings) -> int:
    argv = [sys.executable, "-m", "workers.main", "workers.worker", "--processes", str(args.processes)]
    argv += ["--threads", str(args.threads)]
    # Dramatiq reads these at import. Jobs run long, so a process takes no more messages than it
    # has threads (a queued job never waits behind another process's jobs while a thread idles
    # elsewhere), and an idle worker polls a few times a second so a new job starts at once.
    env = os.environ | {
        "dramatiq_queue_prefetch": os.environ.get("dramatiq_queue_prefetch", str(args.threads)),
        "dramatiq_worker_timeout": os.environ.get("dramatiq_worker_timeout", "250"),
    }
    os.execve(sys.executable, argv, env)
    return 1


def _migrate(_: argparse.Namespace, settings: Settings) -> int:
    from db.migrate import API_ROLE, WORKER_ROLE, grant_roles, upgrade
    from db.storage import MinioStore

    passwords = (settings.db_api_password, settings.db_worker_password)
    if any(passwords) and not all(passwords):
        print("sluice migrate: set both SLUICE_DB_API_PASSWORD and SLUICE_DB_WORKER_PASSWORD, or neither", file=sys.stderr)
        return 2
    upgrade(settings.database_url, dataset_schema=settings.dataset_schema)
    print(f"database schema is at head; dataset schema {settings.dataset_schema!r} is ready")
    if all(passwords):
        grant_roles(
            settings.database_url,
            settings.dataset_schema,
            api_password=settings.db_api_password,
            worker_password=settings.db_worker_password,
        )
        print(f"roles {API_ROLE!r} and {WORKER_ROLE!r} are ready; connect the API and the workers with them")
    else:
        print("no role passwords given (SLUICE_DB_API_PASSWORD, SLUICE_DB_WORKER_PASSWORD): no roles created")
    MinioStore.from_settings(settings).ensure_bucket()
    print(f"bucket {settings.s3_bucket!r} is ready")
    return 0


def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[int]]) -> int:
    """Run ``work`` with one database session (the key and owner commands talk to PostgreSQL directly)."""
    from app.errors import ServiceError
    from db.engine import make_engine, make_sessionmaker

    async def run() -> int:
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session:
                return await work(session)
        except ServiceError as exc:
            print(f"sluice: {exc.detail}", file=sys.stderr)
            return 1
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _key_line(key: ApiKey) -> str:
    from app.keys.schemas import key_state

    def when(moment: datetime | None) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"

    flags = "admin" if key.is_admin else "-"
    return (
        f"{key.id}  {key.prefix}…  {key_state(key):<7}  {flags:<5}  owner {key.owner_id}  created {when(key.created_at)}"
        f"  last used {when(key.last_used_at)}  expires {when(key.expires_at)}  {key.name}"
    )


def _print_secret(key: ApiKey, secret: str, verb: str) -> None:
    print(f"{verb} key {key.id} ({key.prefix}…) named {key.name!r} for owner {key.owner_id}", file=sys.stderr)
    print("store it now: it is not shown again", file=sys.stderr)
    print(secret)


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.keys.service import KeyService

    async def work(session: AsyncSession) -> int:
        key, secret = await KeyService(session).create(
            args.name, admin=args.admin, owner_id=args.owner, expires=args.expires
        )
        _print_secret(key, secret, "created")
        return 0

    return _with_session(settings, work)


def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from app.keys.service import KeyService

    async def work(session: AsyncSession) -> int:
        keys, total = await KeyService(session).list(owner_id=args.owner, limit=args.limit)
        for key in keys:
            print(_key_line(key))
        print(f"{len(keys)} of {total} keys", file=sys.stderr)
        return 0

    return _with_session(settings, work)


def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from app.keys.service import KeyService

    async def work(session: AsyncSession) -> int:
        print(_key_line(await KeyService(session).revoke(args.key_id)))
        return 0

    return _with_session(settings, work)


def _keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from app.keys.service import KeyService

    async def work(session: AsyncSession) -> int:
        key, secret = await KeyService(session).rotate(args.key_id)
        print(f"revoked key {args.key_id}", file=sys.stderr)
        _print_secret(key, secret, "created")
        return 0

    return _with_session(settings, work)


def _owners_quota(args: argparse.Namespace, settings: Settings) -> int:
    from app.quotas.service import QUOTAS, QuotaService
    from db.settings import parse_size

    try:
        given = {
            q: None if getattr(args, q) == "default" else parse_size(getattr(args, q), f"--{q}")
            for q in QUOTAS
            if getattr(args, q) is not None
        }
    except ValueError as exc:
        print(f"sluice: {exc} (or 'default')", file=sys.stderr)
        return 2

    async def work(session: AsyncSession) -> int:
        quotas = QuotaService(session, settings)
        if given:
            await quotas.set(args.owner, given)
        own, uses = await quotas.own(args.owner), await quotas.usage(args.owner)
        for q in QUOTAS:
            source = "own" if own[q] is not None else "default"
            limit = "unlimited" if uses[q].limit is None else str(uses[q].limit)
            print(f"{q:<8}  limit {limit:<14} ({source})  used {uses[q].used}")
        return 0

    return _with_session(settings, work)


def _upload(args: argparse.Namespace, _: Settings) -> int:
    from app.client.command import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default=os.environ.get("SLUICE_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("SLUICE_PORT", "8000")))
    serve.add_argument("--workers", type=int, default=1, help="API processes")
    serve.set_defaults(run=_serve)

    worker = sub.add_parser("worker", help="run Dramatiq workers that process files")
    worker.add_argument("--processes", type=int, default=1)
    worker.add_argument("--threads", type=int, default=2)
    worker.set_defaults(run=_worker)

    migrate = sub.add_parser(
        "migrate", help="upgrade the database schema, create the bucket, and the roles when their passwords are set"
    )
    migrate.set_defaults(run=_migrate)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key; the key alone is printed on the last line")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="may use the admin routes")
    create.add_argument("--owner", type=uuid.UUID, help="add the key to this existing owner id")
    create.add_argument("--expires", help="lifetime, e.g. 90d, 12h, 2w (default: never expires)")
    create.set_defaults(run=_keys_create)
    listing = keys.add_parser("list", help="every key (newest first): state, owner, created, last used, expires")
    listing.add_argument("--owner", type=uuid.UUID, help="only this owner's keys")
    listing.add_argument("--limit", type=int, default=1000)
    listing.set_defaults(run=_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key at once, on every API process; its stream links die too")
    revoke.add_argument("key_id", type=uuid.UUID)
    revoke.set_defaults(run=_keys_revoke)
    rotate = keys.add_parser("rotate", help="revoke a key and print a new one (same owner, name, admin, expiry)")
    rotate.add_argument("key_id", type=uuid.UUID)
    rotate.set_defaults(run=_keys_rotate)

    owners = sub.add_parser("owners", help="manage owners").add_subparsers(dest="owners_command", required=True)
    quota = owners.add_parser("quota", help="show an owner's quotas and use; set any given (a number, 500GiB, or 'default')")
    quota.add_argument("owner", type=uuid.UUID)
    quota.add_argument("--bytes", help="bytes stored, e.g. 500GiB")
    quota.add_argument("--files", help="files kept")
    quota.add_argument("--sessions", help="upload sessions (chunked and tus) open at once")
    quota.add_argument("--jobs", help="processing jobs at once")
    quota.set_defaults(run=_owners_quota)

    from app.client.command import add_arguments

    upload = sub.add_parser("upload", help="upload files: chunked and resumable above --threshold, with progress")
    add_arguments(upload)
    upload.set_defaults(run=_upload)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"sluice: bad setting: {exc}", file=sys.stderr)
        return 2
    return int(args.run(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
