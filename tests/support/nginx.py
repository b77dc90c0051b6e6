"""Debian's nginx in front of test API servers, configured from ops/nginx/sluice.conf itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.servers import REPO, free_port, wait_for

CONF = REPO / "ops" / "nginx" / "sluice.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
UPSTREAM = re.compile(r"(upstream sluice_api \{\n)((?:\s*server [^\n]*\n)+)")
LISTEN = re.compile(r"^(\s*)listen 8080;$", re.MULTILINE)


def available() -> bool:
    return os.access(NGINX, os.X_OK)


def render(conf: str, upstreams: list[str], port: int, *, bind: str | None = None) -> str:
    """The repository's configuration with the test's API addresses and port; ``bind`` is the
    address nginx connects to the API from (so the API can tell the proxy from a direct client)."""
    conf, found = UPSTREAM.subn(lambda m: m.group(1) + "".join(f"    server {u};\n" for u in upstreams), conf)
    assert found == 1, "ops/nginx/sluice.conf has no `upstream sluice_api` with server lines"
    extra = f"\n    proxy_bind {bind};" if bind else ""
    conf, found = LISTEN.subn(lambda m: f"{m.group(1)}listen 127.0.0.1:{port};{extra}", conf)
    assert found == 1, "ops/nginx/sluice.conf has no `listen 8080;` line"
    return conf


class Nginx:
    """``nginx -g 'daemon off;'`` with its pid, logs and temp files in a directory of its own."""

    def __init__(self, upstreams: list[str], *, bind: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "sluice.conf").write_text(render(CONF.read_text(), upstreams, self.port, bind=bind))
        temp = {name: self.dir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for path in temp.values():
            path.mkdir()
        (self.dir / "nginx.conf").write_text(
            f"""worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 1024; }}
http {{
    access_log {self.dir}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {self.dir}/sluice.conf;
}}
"""
        )
        argv = [NGINX, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(self.dir / "nginx.conf")]
        check = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t refused the rendered ops/nginx/sluice.conf:\n{check.stderr}"
        self.process = subprocess.Popen([*argv, "-g", "daemon off;"])
        try:
            wait_for(f"{self.url}/health", process=self.process)
        except BaseException:
            self.stop()
            raise

    def error_log(self) -> str:
        return (self.dir / "error.log").read_text()

    def spooled(self) -> list[str]:
        """nginx's warnings that it wrote a request body or a response to a temporary file."""
        return [line for line in self.error_log().splitlines() if "buffered to a temporary file" in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
