"""Dependency providers shared by every controller; resources come from ``app.state``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Request
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.resources import Resources
from db.settings import Settings
from db.storage import ObjectStore


def _resources(state: State) -> Resources:
    return state.resources  # type: ignore[no-any-return]


async def provide_db_session(state: State) -> AsyncIterator[AsyncSession]:
    """A session per request; services commit explicitly, anything uncommitted is rolled back."""
    async with _resources(state).sessionmaker() as session:
        yield session


def provide_store(state: State) -> ObjectStore:
    return _resources(state).store


def provide_settings(state: State) -> Settings:
    return _resources(state).settings


def provide_principal(request: Request[Principal, object, State]) -> Principal:
    return request.user
