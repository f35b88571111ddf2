"""trio-parallel's side of the payload table in the README: the same echoes
as `cargo run --release --example bench -- payload` (1, 16 and 64 MiB of
bytes, a 1 MiB string, a no-op), through one trio-parallel worker process.

Run beside it, on the same machine:

    pip install trio-parallel
    python3 benches/trio_parallel_payload.py
"""

import statistics
import time

import trio
import trio_parallel


def echo(value):
    return value


def noop():
    return None


async def main():
    limiter = trio.CapacityLimiter(1)
    async with trio_parallel.open_worker_context() as ctx:
        async def run(rounds, fn, *args):
            await ctx.run_sync(fn, *args, limiter=limiter)
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                back = await ctx.run_sync(fn, *args, limiter=limiter)
                times.append(time.perf_counter() - start)
                if args:
                    assert len(back) == len(args[0])
            return statistics.median(times)

        print(f"trio_parallel_noop_p50 {await run(500, noop) * 1e6:.2f} us")
        for mib, rounds in [(1, 100), (16, 20), (64, 10)]:
            data = bytes([7]) * (mib << 20)
            print(f"trio_parallel_bytes_{mib}mib_p50 {await run(rounds, echo, data) * 1e3:.2f} ms")
        text = "añ€𝄞" * ((1 << 20) // 10)
        print(f"trio_parallel_string_1mib_p50 {await run(100, echo, text) * 1e3:.2f} ms")


if __name__ == "__main__":
    trio.run(main)
