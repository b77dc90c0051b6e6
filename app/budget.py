"""One memory budget for the bytes every upload route holds (single-shot, batch parts, chunks).

A request takes memory only when it has bytes to keep, one slice (``GRAIN``) at a time, and gives
it back as soon as those bytes are in the object store. A client that announces 64 MiB and stalls
holds what it sent, rounded up to a slice, not what it announced. The bytes themselves live in
``PartBuffer``s: private anonymous memory maps whose pages are committed as they are written. A
closed buffer's map is kept for the next part while the budget has room for its pages, since a
fresh map costs a page fault and a zeroed page per 4 KiB written and an unmap per part: that
tripled the API's kernel CPU per uploaded GiB. Kept maps are unmapped as the budget fills and once
uploads pause, so the RSS follows the budget instead of staying at its peak.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import mmap
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from types import TracebackType

from litestar.datastructures import State

from db.settings import MiB, Settings

GRAIN = MiB
"""Unit in which claims grow: small uploads take one, a stalled one holds at most what it sent plus one."""
TRIM_AFTER = 2.0
"""Seconds with no upload memory held before kept part buffers and the C heap's free pages go back to the kernel."""


def _malloc_trim() -> Callable[[], object] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: nothing to trim
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


MALLOC_TRIM = _malloc_trim()


class UploadMemory:
    """Bytes of upload buffers one API process holds at once, shared fairly between owners.

    Fairness: a freed slice goes to the waiting owner that holds the least (first come, first
    served within an owner), so one owner's many or greedy requests cannot keep another's out.

    No deadlock: a chunk is sent to the store only when it is whole, so its claim grows while it
    already holds memory. Two half-filled chunks could then each wait for the other's memory
    forever. A slice is therefore granted only when, after the grant, every claim could still grow
    to its full size in some order (the banker's algorithm, with one resource); a claim that cannot
    have its slice yet waits without holding up other owners' claims that can.
    """

    def __init__(self, limit: int, spare: int | None = None) -> None:
        self.limit = limit
        self.used = 0
        self.maps = _Maps(self, limit // 4 if spare is None else spare)
        """Maps of closed part buffers, kept for the next ones."""
        self._claims: set[Claim] = set()
        self._owners: Counter[Hashable] = Counter()
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()
        self._trim: asyncio.TimerHandle | None = None

    def claim(self, owner: Hashable, size: int) -> Claim:
        """A claim on up to ``size`` bytes for one buffer of ``owner``; it holds nothing yet."""
        if not 0 < size <= self.limit:
            raise ValueError(f"a claim must be 1 to {self.limit} bytes, not {size}")
        return Claim(self, owner, size)

    def held_by(self, owner: Hashable) -> int:
        return self._owners[owner]

    async def _grow(self, claim: Claim, step: int) -> None:
        if not self._waiters and self._grantable(claim, step):
            self._grant(claim, step)
            return
        waiter = _Waiter(claim, step, next(self._order), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._pump()
        try:
            await waiter.granted
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                # A waiter that leaves may have been what kept others from a safe grant.
                self._pump()

    def _release(self, claim: Claim) -> None:
        if claim.held:
            self.used -= claim.held
            self._owners[claim.owner] -= claim.held
            if self._owners[claim.owner] <= 0:
                del self._owners[claim.owner]
            claim.held = 0
        self._claims.discard(claim)
        self._pump()
        if self.used == 0:
            self._trim_soon()

    def _trim_soon(self) -> None:
        """Once uploads pause, unmap the kept part buffers and hand back what a burst left in
        glibc's heaps (the small objects of a hundred requests leave free pages behind)."""
        if self._trim is not None:
            self._trim.cancel()
        loop = asyncio.get_running_loop()

        def trim() -> None:
            self._trim = None
            if self.used == 0:
                self.maps.drain()
                if MALLOC_TRIM is not None:
                    loop.run_in_executor(None, MALLOC_TRIM)

        self._trim = loop.call_later(TRIM_AFTER, trim)

    def _pump(self) -> None:
        """Grant every waiting slice that can be granted, least-holding owner first."""
        granted = True
        while granted and self._waiters:
            granted = False
            for waiter in sorted(self._waiters, key=lambda w: (self._owners[w.claim.owner], w.order)):
                if waiter.granted.done():
                    self._waiters.remove(waiter)
                    continue
                if self._grantable(waiter.claim, waiter.step):
                    self._waiters.remove(waiter)
                    # Counted now, not when the task resumes: a request cancelled in between
                    # still holds the slice, and its claim's release gives it back.
                    self._grant(waiter.claim, waiter.step)
                    waiter.granted.set_result(None)
                    granted = True
                    break

    def _grant(self, claim: Claim, step: int) -> None:
        claim.held += step
        self.used += step
        self._owners[claim.owner] += step
        self._claims.add(claim)
        if self.maps.kept:
            self.maps.fit()

    def _grantable(self, claim: Claim, step: int) -> bool:
        free = self.limit - self.used - step
        if free < 0:
            return False
        needs = [(other.size - other.held, other.held) for other in self._claims if other is not claim]
        needs.append((claim.size - claim.held - step, claim.held + step))
        if free >= max(need for need, _ in needs):
            return True  # any claim can finish first, and each one that does frees more
        # Is there an order in which every claim can reach its size? Claims that need no more
        # memory give theirs back by themselves; then the smallest remaining need goes first.
        for need, held in sorted(needs):
            if need > free:
                return False
            free += held
        return True


@dataclass(eq=False, slots=True)
class Claim:
    """Memory for one buffer of at most ``size`` bytes, taken a slice at a time as bytes arrive."""

    memory: UploadMemory
    owner: Hashable
    size: int
    held: int = 0

    async def cover(self, nbytes: int) -> None:
        """Hold at least ``nbytes`` (at most ``size``), waiting for slices while the budget is spent."""
        while self.held < nbytes:
            await self.memory._grow(self, min(GRAIN - self.held % GRAIN, self.size - self.held))

    def release(self) -> None:
        """Give everything back; safe to call more than once."""
        self.memory._release(self)


@dataclass(eq=False, slots=True)
class _Waiter:
    claim: Claim
    step: int
    order: int
    granted: asyncio.Future[None] = field(repr=False)


class _Maps:
    """Memory maps of closed part buffers, reused by the next ones instead of mapping fresh pages.

    A kept map's pages stay committed, and so do those of a reused map that its claim has not paid
    for yet: together ("unpaid") they stay within ``spare``, and with the budget's use within its
    limit. Taking a kept map moves its pages from one kind to the other, and filling a buffer only
    pays them off, so a map is kept only when both bounds allow it, and kept maps are unmapped
    when a grant would pass the limit. Only a reused map's unpaid pages cannot be unmapped: a
    request that stalls on one can hold up to ``spare`` beyond the limit.
    """

    def __init__(self, memory: UploadMemory, spare: int) -> None:
        self.spare = spare
        self._memory = memory
        self._kept: list[tuple[mmap.mmap, int]] = []
        self._reused: set[PartBuffer] = set()

    def take(self, buffer: PartBuffer, size: int) -> tuple[mmap.mmap, int]:
        """A map for ``size`` bytes and how many of its bytes are committed already."""
        fits = [(len(m), i) for i, (m, _) in enumerate(self._kept) if size <= len(m) <= 2 * size]
        if not fits:
            length = -(-size // GRAIN) * GRAIN
            return mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), 0
        found, committed = self._kept.pop(min(fits)[1])
        self._reused.add(buffer)
        return found, committed

    def give_back(self, buffer: PartBuffer, used: mmap.mmap, committed: int) -> None:
        self._reused.discard(buffer)
        try:
            # Only a resize tells whether views of the map are still alive (a traceback's):
            # such a map must not be handed out again; its pages go when the last view does.
            used.resize(len(used))
        except BufferError:
            return
        unpaid = self._unpaid() + committed
        # The budget still counts this buffer's slices: its claim is released right after.
        if unpaid <= self.spare and self._memory.used - buffer.claim.held + unpaid <= self._memory.limit:
            self._kept.append((used, committed))
        else:
            used.close()

    def fit(self) -> None:
        """Unmap kept maps, oldest first, until the unpaid pages fit beside the budget's use."""
        while self._kept and self._memory.used + self._unpaid() > self._memory.limit:
            self._kept.pop(0)[0].close()

    def drain(self) -> None:
        """Unmap every kept map."""
        kept, self._kept = self._kept, []
        for used, _ in kept:
            used.close()

    @property
    def kept(self) -> int:
        """Committed bytes of the kept maps."""
        return sum(committed for _, committed in self._kept)

    def _unpaid(self) -> int:
        unpaid = self.kept
        for buffer in list(self._reused):
            owed = buffer.committed - buffer.claim.held
            if owed > 0:
                unpaid += owed
            else:
                self._reused.discard(buffer)  # its claim only grows until the buffer closes
        return unpaid


class PartBuffer:
    """Up to ``claim.size`` bytes in an anonymous memory map, paid for from the claim as they arrive."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.length = 0
        self._maps = claim.memory.maps
        self._map: mmap.mmap | None
        self._map, self.committed = self._maps.take(self, claim.size)
        """Bytes of the map whose pages are committed: written now or by an earlier buffer."""
        self._view = memoryview(self._map)

    @property
    def capacity(self) -> int:
        return self.claim.size

    @property
    def full(self) -> bool:
        return self.length == self.claim.size

    async def fill(self, data: memoryview) -> int:
        """Copy as much of ``data`` as fits; returns how many bytes were taken."""
        taken = min(len(data), self.claim.size - self.length)
        end = self.length + taken
        if end > self.claim.held:
            await self.claim.cover(end)
        self._view[self.length : end] = data if taken == len(data) else data[:taken]
        self.length = end
        if end > self.committed:
            self.committed = end
        return taken

    def view(self) -> memoryview:
        """The bytes written so far; release it (``with``) before ``close``."""
        return self._view[: self.length]

    def close(self) -> None:
        """Give the map back for the next buffer and the memory back to the budget; safe to call more than once."""
        self._view.release()
        if self._map is not None:
            used, self._map = self._map, None
            self._maps.give_back(self, used, self.committed)
        self.claim.release()

    async def __aenter__(self) -> PartBuffer:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def upload_memory(state: State, settings: Settings) -> UploadMemory:
    """The process's one budget (per app), made on first use."""
    memory: UploadMemory | None = state.get("upload_memory")
    if memory is None:
        memory = state["upload_memory"] = UploadMemory(settings.upload_memory)
    return memory
