from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from app.bodies import MAX_JSON_DEPTH, json_depth_exceeds


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        (b"[" * 5000, True),
        (b"{" * 5000, True),
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), True),
        (b'{"a": "' + b"[" * 100 + b'"}', False),
        (b'["\\\\", "[[[[", "\\"[[[", ' + b"[]," * 100 + b"1]", False),
        (b'{"file_ids": ["x"], "options": {"mapping": {"rename": {"a": "b"}}}}', False),
    ],
)
def test_depth(body: bytes, too_deep: bool) -> None:
    assert json_depth_exceeds(body) is too_deep


def test_agrees_with_a_json_reader_on_random_documents() -> None:
    rnd = random.Random(7)
    atoms = [1, None, "plain", "a[", '"]\\', "{x}", "\\\\\"[", ""]

    def build(level: int) -> Any:
        roll = rnd.random()
        if level > 12 or roll < 0.3:
            return rnd.choice(atoms)
        if roll < 0.65:
            return [build(level + 1) for _ in range(rnd.randint(0, 3))]
        return {rnd.choice(["k", "[", '}"', "q\\"]) + str(i): build(level + 1) for i in range(rnd.randint(0, 3))}

    for _ in range(1500):
        value = build(0)
        body = json.dumps(value).encode()
        for limit in (2, 5, 9):
            assert json_depth_exceeds(body, limit) is (depth(value) > limit), body


def test_a_10_mb_body_is_checked_without_a_python_loop_over_it() -> None:
    bodies = [
        b"[" + b",".join([b"[1]"] * 2_500_000) + b"]",
        b"[" + b",".join([b'"[a"'] * 2_000_000) + b"]",
    ]
    for body in bodies:
        started = time.perf_counter()
        assert not json_depth_exceeds(body)
        assert time.perf_counter() - started < 3
