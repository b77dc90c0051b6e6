"""The built web app at ``/``: cache headers, client-side routes, CSP, the no-build hint, offline docs."""

from __future__ import annotations

import re

import httpx

from app.resources import Resources
from tests.integration.web.conftest import ASSET, INDEX
from tests.support.servers import ApiServer

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {part.split()[0]: part.split(" ", 1)[1] if " " in part else "" for part in policy.split("; ")}


def test_index_is_revalidated_and_assets_are_cached_for_ever(web_api: ApiServer) -> None:
    index = httpx.get(f"{web_api.url}/", headers=HTML)
    assert index.status_code == 200 and index.content == INDEX
    assert index.headers["content-type"].startswith("text/html")
    assert index.headers["cache-control"] == "no-cache"
    asset = httpx.get(f"{web_api.url}/assets/index-3f9a1c.js")
    assert asset.status_code == 200 and asset.content == ASSET
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "javascript" in asset.headers["content-type"]
    for response in (index, asset):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "attachment" not in response.headers.get("content-disposition", "")
    other = httpx.get(f"{web_api.url}/favicon.svg")
    assert other.status_code == 200 and other.headers["cache-control"] == "no-cache"
    # HEAD (a proxy's or a link checker's probe): the same headers, no body.
    probe = httpx.head(f"{web_api.url}/assets/index-3f9a1c.js")
    assert probe.status_code == 200 and probe.content == b""
    assert probe.headers["content-length"] == str(len(ASSET)) and probe.headers["cache-control"] == asset.headers["cache-control"]
    assert httpx.head(f"{web_api.url}/operations", headers=HTML).headers["content-length"] == str(len(INDEX))


def test_the_page_policy_allows_only_its_own_origin(web_api: ApiServer) -> None:
    policy = csp(httpx.get(f"{web_api.url}/files/abc", headers=HTML))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert "unsafe-inline" not in policy["style-src"] and "unsafe-eval" not in " ".join(policy.values())
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert policy["form-action"] == "'self'"
    assert policy["img-src"].split()[:2] == ["'self'", "data:"]


def test_client_side_routes_fall_back_to_the_index_for_browsers_only(web_api: ApiServer) -> None:
    for path in ("/files", "/files/9b2f0c3e-0000-4000-8000-000000000000", "/operations", "/sign-in?next=/upload"):
        response = httpx.get(f"{web_api.url}{path}", headers=HTML)
        assert response.status_code == 200, path
        assert response.content == INDEX and response.headers["cache-control"] == "no-cache"
    # A script asking for JSON, or a missing asset, is told the truth.
    assert httpx.get(f"{web_api.url}/files", headers={"Accept": "application/json"}).status_code == 404
    missing = httpx.get(f"{web_api.url}/assets/index-000000.js", headers=HTML)
    assert missing.status_code == 404 and missing.json()["status_code"] == 404


def test_api_and_operational_paths_never_fall_back(web_api: ApiServer, key: str) -> None:
    for path in ("/api/v1/nope", "/api/v2/files", "/api", "/schema/nope/deeper", "/metrics/x", "/health/x", "/ready/x"):
        response = httpx.get(f"{web_api.url}{path}", headers=HTML | {"Authorization": f"Bearer {key}"})
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"].startswith("application/json"), path
        assert response.json()["status_code"] == 404
    # The API itself is unchanged.
    listed = httpx.get(f"{web_api.url}/api/v1/files", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200
    assert httpx.get(f"{web_api.url}/api/v1/files").status_code == 401
    assert httpx.get(f"{web_api.url}/health").json() == {"status": "ok"}


def test_nothing_outside_the_build_is_served(web_api: ApiServer) -> None:
    for raw in ("/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt", "/.hidden"):
        with httpx.Client(base_url=web_api.url) as http:
            request = http.build_request("GET", "/", headers=HTML)
            request.url = request.url.copy_with(raw_path=raw.encode())
            response = http.send(request)
        assert b"outside the build" not in response.content, raw
        assert response.status_code in (200, 404), raw


def test_without_a_build_the_root_says_how_to_make_one_and_the_api_works(bare_api: ApiServer, key: str) -> None:
    root = httpx.get(f"{bare_api.url}/", headers=HTML)
    assert root.status_code == 200
    assert root.headers["content-type"].startswith("text/plain")
    assert "npm ci && npm run build" in root.text and "SLUICE_WEB_DIST" in root.text
    assert httpx.get(f"{bare_api.url}/files", headers=HTML).status_code == 404
    assert httpx.get(f"{bare_api.url}/assets/index-3f9a1c.js").status_code == 404
    assert httpx.get(f"{bare_api.url}/api/v1/files", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert httpx.get(f"{bare_api.url}/schema/swagger").status_code == 200
    assert httpx.head(f"{bare_api.url}/").status_code == 404


def test_web_config_tells_the_uploader_the_limits_without_a_key(web_api: ApiServer, resources: Resources) -> None:
    response = httpx.get(f"{web_api.url}/api/v1/web/config")
    assert response.status_code == 200, response.text
    config = response.json()
    settings = resources.settings
    assert config["max_upload_bytes"] == settings.max_file_size
    assert config["part_size"] == settings.part_size
    assert config["tus_endpoint"] == "/api/v1/tus/"
    assert {".csv", ".tsv", ".txt", ".xlsx", ".gz", "text/csv"} <= set(config["accepted_types"])
    assert ".png" not in config["accepted_types"]
    # The endpoint it names is the one that answers tus.
    options = httpx.options(f"{web_api.url}{config['tus_endpoint']}")
    assert options.headers.get("tus-version") == "1.0.0"


def test_web_config_follows_the_settings(resources: Resources) -> None:
    server = ApiServer(resources.settings.replace(max_file_size=1234567, allowed_kinds=("xlsx",)))
    try:
        config = httpx.get(f"{server.url}/api/v1/web/config").json()
    finally:
        server.stop()
    assert config["max_upload_bytes"] == 1234567
    assert ".xlsx" in config["accepted_types"] and ".csv" not in config["accepted_types"]


def test_swagger_ui_is_served_by_sluice_itself(bare_api: ApiServer) -> None:
    page = httpx.get(f"{bare_api.url}/schema/swagger")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), page.text
    assert "<script>" not in page.text  # no inline script: the policy forbids it
    sources = re.findall(r"""(?:src|href)="([^"]+)\"""", page.text)
    assert any(s.endswith("swagger-ui-bundle.js") for s in sources)
    for source in sources:
        asset = httpx.get(f"{bare_api.url}{source}")
        assert asset.status_code == 200 and len(asset.content) > 0, source
    bundle = httpx.get(f"{bare_api.url}/schema/swagger-ui/swagger-ui-bundle.js")
    assert len(bundle.content) > 500_000 and b"SwaggerUIBundle" in bundle.content
    policy = csp(page)
    assert policy["script-src"] == "'self'" and policy["connect-src"] == "'self'"
    init = httpx.get(f"{bare_api.url}/schema/swagger-ui/init.js").text
    assert "/schema/openapi.json" in init
    assert httpx.get(f"{bare_api.url}/schema/swagger-ui/..%2Fdocs.py").status_code == 404
    assert httpx.get(f"{bare_api.url}/schema/swagger-ui/index.html").status_code == 404


def test_the_document_has_the_bearer_scheme_and_the_upload_bodies(bare_api: ApiServer) -> None:
    doc = httpx.get(f"{bare_api.url}/schema/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    operations = {
        (path, method): op for path, item in doc["paths"].items() for method, op in item.items() if isinstance(op, dict)
    }
    public = {key for key, op in operations.items() if "security" not in op}
    # tus discovery (OPTIONS) needs no key either, by the protocol; a download link carries its own signature.
    assert {key for key in public if key[1] != "options"} == {
        ("/health", "get"),
        ("/ready", "get"),
        ("/api/v1/web/config", "get"),
        ("/api/v1/files/{file_id}/download", "get"),
    }
    assert all(op["security"] == [{"bearer": []}] for key, op in operations.items() if key not in public)
    for path in ("/api/v1/files/{filename}", "/api/v1/uploads/{upload_id}/chunks/{index}"):
        body = operations[(path, "put")]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}
