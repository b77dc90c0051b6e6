"""Request rate limits per API key, counted in Redis so the limit holds across API processes.

Litestar's ``RateLimitMiddleware`` keeps a list of timestamps that each process reads and writes
back, so two processes can both let the last request through; here each request is one atomic
``INCR`` on a fixed window in the same Redis store instead. Two budgets: the upload byte routes
have their own (higher) one, so a big upload is not cut off by its own chunks, and they leave the
general budget alone. A refusal is a 429 with ``Retry-After`` (seconds to the window's end).
"""

from __future__ import annotations

import json
import time
from typing import Any

from litestar.connection import Request
from litestar.datastructures import MutableScopeHeaders
from litestar.middleware.rate_limit import DURATION_VALUES, RateLimitConfig, RateLimitMiddleware
from litestar.stores.redis import RedisStore
from litestar.types import Message, Receive, Scope, Send
from redis.asyncio import Redis

from app.metrics import record_rate_limited
from db.settings import Settings, parse_rate

STORE = "rate_limit"
UPLOAD_OPERATIONS = frozenset({"uploadFile", "uploadFiles", "putUploadChunk", "tusCreate", "tusPatch", "tusMethodOverride"})
"""The routes that carry an upload's bytes (by operation id): they count against the upload budget."""

_HIT = b"""
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""


class CountingRedisStore(RedisStore):
    """Litestar's Redis store plus one atomic counter per window."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        super().__init__(redis, namespace=namespace, handle_client_shutdown=True)
        self._hit = redis.register_script(_HIT)

    async def hit(self, key: str, window: int) -> tuple[int, int]:
        """Count one more request in ``key``'s window; the count so far and the seconds the window has left."""
        count, ttl = await self._hit(keys=[self._make_key(key)], args=[window])
        return int(count), max(int(ttl), 1)


def _is_upload(request: Request[Any, Any, Any]) -> bool:
    return getattr(request.scope.get("route_handler"), "operation_id", None) in UPLOAD_OPERATIONS


def _key_id(request: Request[Any, Any, Any]) -> str:
    # Set by the bearer middleware, which runs first; the routes without a key are excluded.
    return str(request.scope.get("auth"))


class KeyRateLimitMiddleware(RateLimitMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request: Request[Any, Any, Any] = scope["litestar_app"].request_class(scope)
        if scope.get("auth") is None or not await self.should_check_request(request=request):
            await self.app(scope, receive, send)
            return
        store = self.config.get_store_from_app(scope["litestar_app"])
        assert isinstance(store, CountingRedisStore)
        window = DURATION_VALUES[self.unit]
        bucket = int(time.time()) // window
        count, left = await store.hit(f"{self.cache_key_from_request(request)}::{bucket}", window)
        headers = {
            "RateLimit-Limit": str(self.max_requests),
            "RateLimit-Remaining": str(max(self.max_requests - count, 0)),
            "RateLimit-Reset": str(left),
            "RateLimit-Policy": f"{self.max_requests}; w={window}",
        }
        if count > self.max_requests:
            record_rate_limited("upload" if _is_upload(request) else "api")
            await _too_many(send, headers | {"Retry-After": str(left)}, self.max_requests, self.unit)
            return
        await self.app(scope, receive, _with_headers(send, headers))


def _with_headers(send: Send, headers: dict[str, str]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", [])
            scope_headers = MutableScopeHeaders(message)
            for name, value in headers.items():
                scope_headers[name] = value
        await send(message)

    return wrapped


async def _too_many(send: Send, headers: dict[str, str], limit: int, unit: str) -> None:
    # Answered here, like every other error ({status_code, detail}), without reading the body.
    detail = f"this API key made more than {limit} requests this {unit}; retry after {headers['Retry-After']} s"
    body = json.dumps({"status_code": 429, "detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": 429, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def rate_limits(settings: Settings, exclude: list[str]) -> tuple[list[Any], dict[str, CountingRedisStore]]:
    """The middleware (general budget, upload budget) the settings ask for, and the store they count in."""
    general = parse_rate(settings.rate_limit, "SLUICE_RATE_LIMIT")
    upload = parse_rate(settings.upload_rate_limit, "SLUICE_UPLOAD_RATE_LIMIT")
    if general is None and upload is None:
        return [], {}
    middleware = []
    for rate, uploads, name in ((general, False, "api"), (upload, True, "upload")):
        if rate is None:
            continue

        def check(request: Request[Any, Any, Any], uploads: bool = uploads) -> bool:
            return _is_upload(request) is uploads

        config = RateLimitConfig(
            rate_limit=rate,  # type: ignore[arg-type]  # parse_rate gives a Litestar duration unit
            exclude=exclude,
            identifier_for_request=lambda request, name=name: f"{name}:{_key_id(request)}",  # type: ignore[misc]
            check_throttle_handler=check,
            middleware_class=KeyRateLimitMiddleware,
            store=STORE,
        )
        middleware.append(config.middleware)
    redis = Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
    return middleware, {STORE: CountingRedisStore(redis, namespace=f"{settings.redis_prefix}:ratelimit")}
