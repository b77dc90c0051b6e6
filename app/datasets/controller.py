"""HTTP routes of datasets: the rows of a processed file."""

from __future__ import annotations

import uuid

from litestar import Controller, get
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.datasets.schemas import RowsPage
from app.datasets.service import DatasetService
from app.openapi import errors
from app.params import Limit, Offset
from db.settings import Settings


def provide_dataset_service(db_session: AsyncSession, settings: Settings) -> DatasetService:
    return DatasetService(db_session, settings)


class DatasetController(Controller):
    path = "/api/v1/files"
    tags = ["datasets"]
    dependencies = {"datasets": Provide(provide_dataset_service, sync_to_thread=False)}

    @get(
        "/{file_id:uuid}/rows",
        operation_id="getFileRows",
        summary="Columns with types, and rows in file order",
        responses=errors(404, 410, 422, 503),
    )
    async def rows(
        self,
        datasets: DatasetService,
        principal: Principal,
        file_id: uuid.UUID,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> RowsPage:
        return await datasets.rows(principal, file_id, offset=offset, limit=limit)
