"""Browser pages of the configured origins may call the API; no others, and none by default."""

from __future__ import annotations

import httpx

from app.resources import Resources
from tests.support.servers import ApiServer

ORIGIN = "https://dashboard.example"


async def test_configured_origins_may_call_from_a_browser(resources: Resources, key: str, client: httpx.AsyncClient) -> None:
    server = ApiServer(resources.settings.replace(cors_origins=(ORIGIN,)))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            preflight = await http.options(
                "/api/v1/uploads",
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            assert preflight.status_code in (200, 204), preflight.text
            assert preflight.headers["access-control-allow-origin"] == ORIGIN
            assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

            listed = await http.get("/api/v1/files", headers={"Origin": ORIGIN, "Authorization": f"Bearer {key}"})
            assert listed.status_code == 200
            assert listed.headers["access-control-allow-origin"] == ORIGIN

            stranger = await http.get(
                "/api/v1/files", headers={"Origin": "https://elsewhere.example", "Authorization": f"Bearer {key}"}
            )
            assert "access-control-allow-origin" not in stranger.headers
    finally:
        server.stop()

    default = await client.get("/api/v1/files", headers={"Origin": ORIGIN})
    assert default.status_code == 200 and "access-control-allow-origin" not in default.headers
