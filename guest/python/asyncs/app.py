"""The `asyncs` world in Python: async exports that await WASI 0.3's
clocks and the host's async import, beside a sync export, and that pass
streams and futures both ways.

componentize-py's own `asyncio.sleep` raises NotImplementedError for a
non-zero delay, so `sleep` awaits `wait_for` itself.

The exports that return a stream or a future write it from a coroutine
given to `componentize_py_async_support.spawn`, which goes on after the
function has returned.
"""

import asyncio
import builtins

import componentize_py_async_support
import wit_world
from componentize_py_async_support.futures import FutureReader, FutureWriter
from componentize_py_async_support.streams import (
    ByteStreamReader,
    ByteStreamWriter,
    StreamReader,
    StreamWriter,
)
from wit_world.imports import async_host, monotonic_clock

MS = 1_000_000
# The most items `endless` writes at a time.
BATCH = 1024
# The most bytes the byte-stream exports read or write at a time.
CHUNK = 64 * 1024
# The pattern of `bytes` repeats every `PERIOD` bytes.
PERIOD = 251
U32 = 0xFFFF_FFFF

spawn = componentize_py_async_support.spawn


class WitWorld(wit_world.WitWorld):
    async def double(self, x: int) -> int:
        return x * 2

    def fib(self, n: int) -> int:
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a

    async def sleep(self, ms: int) -> int:
        start = monotonic_clock.now()
        await monotonic_clock.wait_for(ms * MS)
        return (monotonic_clock.now() - start) // MS

    async def naps(self, n: int, ms: int) -> int:
        got = await asyncio.gather(*(async_host.nap(ms) for _ in range(n)))
        return sum(got)

    async def fail(self, after_ms: int) -> int:
        await monotonic_clock.wait_for(after_ms * MS)
        raise RuntimeError("failing on purpose")

    async def spin(self) -> int:
        n = 0
        while True:
            n += 1

    async def count_up(self, n: int, delay_ms: int) -> StreamReader[int]:
        tx, rx = wit_world.u32_stream()
        spawn(_count_up(tx, n, delay_ms))
        return rx

    async def endless(self) -> StreamReader[int]:
        tx, rx = wit_world.u32_stream()
        spawn(_endless(tx))
        return rx

    async def sum(self, items: StreamReader[int]) -> int:
        total = 0
        with items:
            while not items.writer_dropped:
                for item in await items.read(BATCH):
                    total += item
        return total

    async def eventually(self, value: int, delay_ms: int) -> FutureReader[int]:
        tx, rx = wit_world.u32_future(lambda: value)
        spawn(_eventually(tx, value, delay_ms))
        return rx

    async def add_later(self, x: FutureReader[int], y: int) -> int:
        return (await x.read() + y) & U32

    async def bytes(self, n: int) -> ByteStreamReader:
        tx, rx = wit_world.byte_stream()
        spawn(_bytes(tx, n))
        return rx

    async def count_bytes(self, data: ByteStreamReader) -> int:
        total = 0
        with data:
            while not data.writer_dropped:
                total += len(await data.read(CHUNK))
        return total

    async def echo_bytes(self, data: ByteStreamReader) -> ByteStreamReader:
        tx, rx = wit_world.byte_stream()
        spawn(_echo_bytes(data, tx))
        return rx

    def echo_list(self, data: builtins.bytes) -> builtins.bytes:
        return data

    async def stall(self) -> StreamReader[int]:
        tx, rx = wit_world.u32_stream()
        spawn(_stall(tx))
        return rx


async def _count_up(tx: StreamWriter[int], n: int, delay_ms: int) -> None:
    with tx:
        for i in range(1, n + 1):
            if delay_ms > 0:
                await monotonic_clock.wait_for(delay_ms * MS)
            await tx.write_all([i])
            if tx.reader_dropped:
                return


async def _endless(tx: StreamWriter[int]) -> None:
    with tx:
        next_ = 0
        while not tx.reader_dropped:
            batch = [(next_ + k) & U32 for k in range(BATCH)]
            next_ = (next_ + await tx.write(batch)) & U32


async def _eventually(tx: FutureWriter[int], value: int, delay_ms: int) -> None:
    await monotonic_clock.wait_for(delay_ms * MS)
    # `False` means the reader dropped the future: nothing to do.
    await tx.write(value)


async def _bytes(tx: ByteStreamWriter, n: int) -> None:
    # Byte `i` is `i % PERIOD`: a chunk from offset `i` is a slice of the
    # pattern starting at `i % PERIOD`.
    pattern = builtins.bytes(range(PERIOD)) * (CHUNK // PERIOD + 2)
    with tx:
        sent = 0
        while sent < n and not tx.reader_dropped:
            start = sent % PERIOD
            size = min(n - sent, CHUNK)
            sent += await tx.write(pattern[start : start + size])


async def _echo_bytes(data: ByteStreamReader, tx: ByteStreamWriter) -> None:
    with data, tx:
        while not data.writer_dropped and not tx.reader_dropped:
            chunk = await data.read(CHUNK)
            if chunk:
                await tx.write_all(chunk)


async def _stall(tx: StreamWriter[int]) -> None:
    with tx:
        await tx.write_all([1, 2])
        # Never ends the stream: `tx` stays open as long as this loop runs.
        while True:
            await monotonic_clock.wait_for(3600 * 1000 * MS)
