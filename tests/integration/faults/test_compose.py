"""``MinioStore.compose`` against the test S3 server: the joined bytes are the ranges' bytes in
order, its part copies are in flight together (a bounded few), and a failure anywhere leaves no
object and no multipart upload behind (or, while the store is unreachable, one the sweeper owns)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from app.resources import Resources
from db.storage import COMPOSE_COPIES, MinioStore, ObjectRange, PartInfo, StorageError
from tests.integration.faults.support import S3Switch

MiB = 1024 * 1024


class _Watched(MinioStore):
    """The store, with hooks run in each part copy's thread before the copy is sent, and before an abort."""

    def __init__(
        self, store: MinioStore, before: Callable[[int], None], before_abort: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(store._client, store.bucket)
        self._before, self._before_abort = before, before_abort

    def _copy_part(self, key: str, upload_id: str, number: int, source: ObjectRange) -> PartInfo:
        self._before(number)
        return super()._copy_part(key, upload_id, number, source)

    def abort(self, key: str, upload_id: str) -> None:
        self._before_abort()
        super().abort(key, upload_id)


def _key(name: str) -> str:
    return f"files/compose-test/{uuid.uuid4()}/{name}"


def _read(store: MinioStore, key: str) -> bytes:
    stream = store.open(key)
    try:
        return stream.read()
    finally:
        stream.close()
        stream.release_conn()  # type: ignore[attr-defined]


def _sources(store: MinioStore, count: int, size: int = 5 * MiB) -> dict[str, bytes]:
    objects = {_key(f"source-{i}"): os.urandom(size) for i in range(count)}
    for key, data in objects.items():
        store.put(key, data, "application/octet-stream")
    return objects


def _left_behind(store: MinioStore, key: str) -> list[str]:
    return [u.upload_id for u in store.list_incomplete(key)]


def test_the_joined_object_is_the_ranges_bytes_in_order(resources: Resources) -> None:
    store = resources.store
    assert isinstance(store, MinioStore)
    a, b, c = _key("a"), _key("b"), _key("c")
    data = {a: os.urandom(6 * MiB + 17), b: os.urandom(7 * MiB), c: os.urandom(2 * MiB)}
    for key, value in data.items():
        store.put(key, value, "text/csv")
    ranges = [
        ObjectRange(a, MiB + 3, 5 * MiB),
        ObjectRange(b, 0, 7 * MiB),
        ObjectRange(c, 0, 0),
        ObjectRange(a, 0, 5 * MiB),
        ObjectRange(c, 100, 1000),
    ]
    joined = _key("joined")
    store.compose(joined, ranges, "text/csv")
    expected = b"".join(data[r.key][r.offset : r.offset + r.length] for r in ranges)
    assert _read(store, joined) == expected
    assert _left_behind(store, joined) == []


def test_no_ranges_make_an_empty_object(resources: Resources) -> None:
    store = resources.store
    joined = _key("empty")
    store.compose(joined, [ObjectRange(_key("never-read"), 0, 0)], "text/csv")
    assert _read(store, joined) == b""


def test_the_part_copies_are_in_flight_together_and_no_more_than_the_bound(resources: Resources) -> None:
    store = resources.store
    assert isinstance(store, MinioStore)
    objects = _sources(store, 2 * COMPOSE_COPIES)
    lock = threading.Lock()
    in_flight, most = 0, 0
    # The first copies meet at a barrier: copies sent one at a time would never get past it.
    barrier = threading.Barrier(COMPOSE_COPIES, timeout=30)

    def before(number: int) -> None:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        if number <= COMPOSE_COPIES:
            barrier.wait()
        time.sleep(0.2)
        with lock:
            in_flight -= 1

    joined = _key("joined")
    _Watched(store, before).compose(joined, [ObjectRange(k, 0, len(v)) for k, v in objects.items()], "text/csv")
    assert most == COMPOSE_COPIES
    assert _read(store, joined) == b"".join(objects.values())


def test_a_missing_source_fails_the_join_and_leaves_nothing(resources: Resources) -> None:
    store = resources.store
    assert isinstance(store, MinioStore)
    objects = _sources(store, 3)
    keys = list(objects)
    ranges = [ObjectRange(k, 0, 5 * MiB) for k in keys]
    ranges.insert(1, ObjectRange(_key("gone"), 0, 5 * MiB))
    joined = _key("joined")
    with pytest.raises(StorageError, match="NoSuchKey|404"):
        store.compose(joined, ranges, "text/csv")
    assert store.stat(joined) is None
    assert _left_behind(store, joined) == []


def test_an_outage_during_the_copies_aborts_the_upload_once_the_store_answers(
    resources: Resources, switch: S3Switch, store_behind_switch: MinioStore
) -> None:
    objects = _sources(resources.store, 6)
    aborts: list[None] = []

    def before(number: int) -> None:
        # The third copy finds the store down, and the copies in flight are reset.
        if number == 3:
            switch.down()

    def before_abort() -> None:
        aborts.append(None)
        switch.up()

    joined = _key("joined")
    with pytest.raises(StorageError, match="unreachable"):
        _Watched(store_behind_switch, before, before_abort).compose(
            joined, [ObjectRange(k, 0, len(v)) for k, v in objects.items()], "text/csv"
        )
    assert len(aborts) == 1
    assert resources.store.stat(joined) is None
    assert _left_behind(resources.store, joined) == []


def test_a_store_that_stays_down_leaves_the_upload_to_the_sweeper_and_says_so(
    resources: Resources, switch: S3Switch, store_behind_switch: MinioStore
) -> None:
    objects = _sources(resources.store, 4)

    def before(number: int) -> None:
        if number == 2:
            switch.down()

    joined = _key("joined")
    with pytest.raises(StorageError) as failure:
        _Watched(store_behind_switch, before).compose(
            joined, [ObjectRange(k, 0, len(v)) for k, v in objects.items()], "text/csv"
        )
    switch.up()
    (orphan,) = _left_behind(resources.store, joined)
    assert any(orphan in note and "sweeper" in note for note in failure.value.__notes__)
    resources.store.abort(joined, orphan)
