"""HTTP routes of live progress: ``text/event-stream`` for a job, a batch of jobs, an upload."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Response, WebSocket, get, post, websocket
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.auth import Principal
from app.events.fanout import EventChannels
from app.events.schemas import StreamLink, StreamLinkIn
from app.events.service import EventService
from app.events.sockets import serve
from app.openapi import errors
from db.settings import Settings

LastEventId = Annotated[
    str | None,
    Parameter(
        header="Last-Event-ID",
        required=False,
        description="Id of the last event received; browsers send it when they reconnect",
    ),
]
STREAM: dict[str, Any] = {
    "media_type": "text/event-stream",
    "description": (
        "Server-Sent Events: a `snapshot` of the current state first, then live events, ending after the "
        "terminal event; a comment heartbeat while idle."
    ),
    "responses": {
        204: ResponseSpec(None, description="Last-Event-ID shows the end was already received"),
        **errors(404, 422),
    },
}


def provide_event_service(state: State, channels: EventChannels, settings: Settings) -> EventService:
    return EventService(state.resources.sessionmaker, channels, settings)


class EventController(Controller):
    path = "/api/v1"
    tags = ["events"]
    dependencies = {"events": Provide(provide_event_service, sync_to_thread=False)}

    @post(
        "/events/links",
        operation_id="createStreamLink",
        status_code=201,
        summary="A URL that opens one event stream without an Authorization header (for EventSource)",
        responses=errors(422, 503),
    )
    async def create_link(self, events: EventService, principal: Principal, data: StreamLinkIn) -> StreamLink:
        return await events.link(principal, data.path, data.ttl_s)

    @get("/jobs/{job_id:uuid}/events", operation_id="jobEvents", **STREAM)
    async def job_events(
        self, events: EventService, principal: Principal, job_id: uuid.UUID, last_event_id: LastEventId = None
    ) -> Response[Any]:
        return _response(await events.job_stream(principal, job_id, last_event_id))

    @get("/batches/{batch_id:uuid}/events", operation_id="batchEvents", **STREAM)
    async def batch_events(
        self, events: EventService, principal: Principal, batch_id: uuid.UUID, last_event_id: LastEventId = None
    ) -> Response[Any]:
        return _response(await events.batch_stream(principal, batch_id, last_event_id))

    @websocket("/jobs/{job_id:uuid}/events/ws")
    async def job_socket(
        self, socket: WebSocket, events: EventService, job_id: uuid.UUID, last_event_id: SocketLastEventId = None
    ) -> None:
        await serve(socket, events.job_stream(socket.user, job_id, last_event_id))

    @websocket("/batches/{batch_id:uuid}/events/ws")
    async def batch_socket(
        self, socket: WebSocket, events: EventService, batch_id: uuid.UUID, last_event_id: SocketLastEventId = None
    ) -> None:
        await serve(socket, events.batch_stream(socket.user, batch_id, last_event_id))

    @websocket("/uploads/{upload_id:uuid}/events/ws")
    async def upload_socket(
        self, socket: WebSocket, events: EventService, upload_id: uuid.UUID, last_event_id: SocketLastEventId = None
    ) -> None:
        await serve(socket, events.upload_stream(socket.user, upload_id, last_event_id))

    @get("/uploads/{upload_id:uuid}/events", operation_id="uploadEvents", **STREAM)
    async def upload_events(
        self, events: EventService, principal: Principal, upload_id: uuid.UUID, last_event_id: LastEventId = None
    ) -> Response[Any]:
        return _response(await events.upload_stream(principal, upload_id, last_event_id))


SocketLastEventId = Annotated[
    str | None,
    Parameter(query="last_event_id", required=False, description="Id of the last event received, to resume after it"),
]


def _response(stream: AsyncIterator[ServerSentEventMessage] | None) -> Response[Any]:
    # 204 is what tells a browser's EventSource to stop reconnecting.
    return Response(None, status_code=204) if stream is None else ServerSentEvent(stream)
