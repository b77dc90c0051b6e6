"""The clamd client alone, against a real clamd: segments and their overlap, clamd's stream limit,
and a scanner that is not there."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.support.clamd import EICAR, SIGNATURE, ClamdServer
from tests.support.servers import free_port
from workers.scanning import Clamd, ScannerRefused, ScannerUnavailable, parse_address

SEGMENT = 64 * 1024


def reader(data: bytes, step: int = 5000) -> Callable[[int], Awaitable[bytes]]:
    """``read(n)`` over ``data``, never more than ``step`` bytes at once (as a store stream may)."""
    position = 0

    async def read(n: int) -> bytes:
        nonlocal position
        piece = data[position : position + min(n, step)]
        position += len(piece)
        return piece

    return read


def filler(size: int) -> bytes:
    line = b"1,alpha,2024-01-01,10.5\n"
    return (line * (size // len(line) + 1))[:size]


def straddling(boundary: int) -> bytes:
    """A CSV with EICAR across byte ``boundary``, the end of the first segment."""
    return filler(boundary - 30) + EICAR + filler(3 * SEGMENT)


async def test_clean_and_infected_verdicts(clamd: ClamdServer) -> None:
    scanner = Clamd(clamd.url)
    assert await scanner.scan(reader(filler(200_000))) is None
    found = await scanner.scan(reader(filler(100_000) + EICAR + filler(100)))
    assert found is not None and found.startswith(SIGNATURE)


async def test_a_signature_across_a_segment_boundary_is_found_in_the_overlap(clamd: ClamdServer) -> None:
    data = straddling(SEGMENT)
    found = await Clamd(clamd.url, segment=SEGMENT, overlap=4096).scan(reader(data))
    assert found is not None and found.startswith(SIGNATURE)
    # Without the overlap each segment holds only part of it: the check above is not vacuous.
    assert await Clamd(clamd.url, segment=SEGMENT, overlap=1).scan(reader(data)) is None


async def test_a_signature_in_a_late_segment_is_found(clamd: ClamdServer) -> None:
    data = filler(5 * SEGMENT + 123) + EICAR + filler(1000)
    found = await Clamd(clamd.url, segment=SEGMENT, overlap=4096).scan(reader(data, step=1 << 20))
    assert found is not None and found.startswith(SIGNATURE)


@pytest.fixture(scope="module")
def small_clamd(clamd: ClamdServer) -> Iterator[ClamdServer]:
    """A clamd whose StreamMaxLength (1M) is below what Sluice sends in one segment."""
    server = ClamdServer(stream_max_length="1M")
    server.start()
    yield server
    server.close()


async def test_a_stream_over_clamds_limit_is_refused_naming_the_setting(small_clamd: ClamdServer) -> None:
    with pytest.raises(ScannerRefused, match="StreamMaxLength"):
        # 1.5 MiB fits in the sockets' buffers: the whole stream is written before clamd stops
        # reading at 1 MiB, so its refusal is read rather than lost to a reset mid-write.
        await Clamd(small_clamd.url).scan(reader(filler(3 * 512 * 1024), step=256 * 1024))
    # Within the limit the same clamd answers.
    assert await Clamd(small_clamd.url).scan(reader(filler(500_000))) is None


async def test_an_absent_scanner_is_unavailable_not_clean() -> None:
    scanner = Clamd(f"clamd://127.0.0.1:{free_port()}")
    with pytest.raises(ScannerUnavailable, match="cannot connect"):
        await scanner.scan(reader(filler(1000)))
    with pytest.raises(ScannerUnavailable):
        await Clamd("clamd:///nonexistent/clamd.sock").scan(reader(b"a,b\n"))


def test_addresses() -> None:
    assert parse_address("clamd://clamav:3310") == ("clamav", 3310)
    assert parse_address("clamd://[::1]:3310") == ("::1", 3310)
    assert parse_address("clamd:///run/clamav/clamd.ctl") == "/run/clamav/clamd.ctl"
    for bad in ("clamd://", "tcp://clamav:3310", "clamd://clamav", "clamd://clamav:0", "clamd://clamav:x"):
        with pytest.raises(ValueError):
            parse_address(bad)
