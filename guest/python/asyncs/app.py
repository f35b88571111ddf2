"""The `asyncs` world in Python: async exports that await WASI 0.3's
clocks and the host's async import, beside a sync export.

componentize-py's own `asyncio.sleep` raises NotImplementedError for a
non-zero delay, so `sleep` awaits `wait_for` itself.
"""

import asyncio

import wit_world
from wit_world.imports import async_host, monotonic_clock

MS = 1_000_000


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
