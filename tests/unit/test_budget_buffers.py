"""Part buffers reuse the maps of closed ones (no fresh pages per part) within a bound on the
committed pages the budget does not pay for, never while a view of the old bytes is alive, and
give every map back once uploads pause."""

from __future__ import annotations

import asyncio

from app.budget import GRAIN, TRIM_AFTER, PartBuffer, UploadMemory

MiB = 1024 * 1024
PART = 8 * MiB


async def full_buffer(memory: UploadMemory, byte: bytes, size: int = PART) -> PartBuffer:
    buffer = PartBuffer(memory.claim("owner", size))
    await buffer.fill(memoryview(byte * size))
    return buffer


async def test_a_closed_buffers_map_carries_the_next_part_with_only_its_own_bytes() -> None:
    memory = UploadMemory(64 * MiB)
    first = await full_buffer(memory, b"a")
    first.close()
    second = PartBuffer(memory.claim("owner", PART))
    assert second.committed == PART  # the old map, pages still committed
    await second.fill(memoryview(b"b" * 3))
    with second.view() as data:
        assert bytes(data) == b"bbb"
    second.close()
    assert memory.used == 0


async def test_committed_pages_beyond_the_budget_stay_within_spare() -> None:
    memory = UploadMemory(64 * MiB)
    assert memory.maps.spare == 16 * MiB
    buffers = [await full_buffer(memory, bytes([65 + n])) for n in range(6)]
    for buffer in buffers:
        buffer.close()
    assert memory.maps.kept == 16 * MiB  # two maps kept, four unmapped

    # A stalled request reuses a full map and pays for one slice of it: its unpaid pages count.
    stalled = PartBuffer(memory.claim("slow", PART))
    await stalled.fill(memoryview(b"x"))
    assert memory.used == GRAIN
    freed = await full_buffer(memory, b"z")  # takes the other kept map
    freed.close()
    assert memory.maps.kept == PART  # 8 kept + 7 unpaid of the stalled one: within 16
    another = await full_buffer(memory, b"y", PART)  # reuses it again
    another.close()
    assert memory.maps.kept + (stalled.committed - stalled.claim.held) <= memory.maps.spare
    stalled.close()


async def test_kept_maps_give_way_when_the_budget_fills() -> None:
    memory = UploadMemory(32 * MiB)  # spare: 8 MiB
    others = [await full_buffer(memory, b"o") for _ in range(3)]
    (await full_buffer(memory, b"k")).close()
    assert memory.maps.kept == PART  # 24 MiB used + 8 kept: within 32
    # Another request takes its first slice: 25 + 8 would pass the limit, so the kept map goes.
    late = PartBuffer(memory.claim("late", 2 * PART))
    await late.fill(memoryview(b"l"))
    assert memory.maps.kept == 0
    late.close()
    for buffer in others:
        buffer.close()
    assert 0 < memory.maps.kept <= memory.maps.spare


async def test_a_map_with_a_live_view_is_not_handed_out_again() -> None:
    memory = UploadMemory(64 * MiB)
    buffer = await full_buffer(memory, b"k")
    alive = buffer.view()
    buffer.close()
    assert memory.maps.kept == 0
    fresh = PartBuffer(memory.claim("owner", PART))
    assert fresh.committed == 0
    await fresh.fill(memoryview(b"n" * PART))
    assert bytes(alive[:1]) == b"k" and bytes(alive[-1:]) == b"k"
    alive.release()
    fresh.close()


async def test_kept_maps_are_unmapped_once_uploads_pause() -> None:
    memory = UploadMemory(64 * MiB)
    (await full_buffer(memory, b"p")).close()
    assert memory.maps.kept == PART
    await asyncio.sleep(TRIM_AFTER + 0.3)
    assert memory.maps.kept == 0
