"""An API serving a fake web build from a temporary folder, and one with no build at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.resources import Resources
from tests.support.servers import ApiServer

INDEX = b'<!doctype html><html><head><script type="module" src="/assets/index-3f9a1c.js"></script></head><body><div id="root"></div></body></html>\n'
ASSET = b"document.getElementById('root').textContent = 'sluice';\n"


@pytest.fixture(scope="module")
def web_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    (dist / "assets").mkdir()
    (dist / "index.html").write_bytes(INDEX)
    (dist / "assets" / "index-3f9a1c.js").write_bytes(ASSET)
    (dist / "favicon.svg").write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"/>')
    (dist.parent / "secret.txt").write_bytes(b"outside the build")
    return dist


@pytest.fixture(scope="module")
def web_api(resources: Resources, web_dist: Path) -> Iterator[ApiServer]:
    server = ApiServer(resources.settings.replace(web_dist=str(web_dist)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bare_api(resources: Resources, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer(resources.settings.replace(web_dist=str(tmp_path_factory.mktemp("no-build") / "dist")))
    yield server
    server.stop()
