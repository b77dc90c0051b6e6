"""The store's SDK client signs a part with a SHA-256 it is given exactly as it would have hashed it."""

from __future__ import annotations

import hashlib

from minio import Minio
from minio.credentials import Credentials

from db.storage import _PAYLOAD_SHA256, _Client


def test_a_given_payload_hash_builds_the_headers_the_sdk_would() -> None:
    body = b"id,name\n" * 100_000
    creds = Credentials("access", "secret")
    ours = _Client("127.0.0.1:9000", access_key="access", secret_key="secret", secure=False)
    plain = Minio("127.0.0.1:9000", access_key="access", secret_key="secret", secure=False)

    given, _ = ours._build_headers("127.0.0.1:9000", {_PAYLOAD_SHA256: hashlib.sha256(body).hexdigest()}, body, creds)
    hashed, _ = plain._build_headers("127.0.0.1:9000", {}, body, creds)

    assert given["x-amz-content-sha256"] == hashed["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert {k: v for k, v in given.items() if k != "x-amz-date"} == {k: v for k, v in hashed.items() if k != "x-amz-date"}
    assert _PAYLOAD_SHA256 not in given
