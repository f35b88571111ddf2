"""The `session` world in Python (componentize-py): state kept across a
session's calls, and exported resources, as the Rust `session` guest."""

import wit_world
from wit_world import exports

from counters import DROPPED, LIVE, Counter

COUNT = 0
STATE = bytearray()


class WitWorld(wit_world.WitWorld):
    def bump(self) -> int:
        global COUNT
        COUNT += 1
        return COUNT

    def grow(self, n: int) -> int:
        STATE.extend(b"\x07" * n)
        return len(STATE)

    def fail(self) -> None:
        raise RuntimeError("the session's Python guest fails on purpose")

    def spin(self) -> None:
        x = 0
        while True:
            x += 1


class Counters(exports.Counters):
    def total(self, a: Counter, b: Counter) -> int:
        return a.value + b.value

    def consume(self, c: Counter) -> int:
        return c.value

    def pair(self, start: int):
        return (Counter(start), [Counter(start + 1), Counter(start + 2)])

    def dropped(self):
        return list(DROPPED)

    def live(self) -> int:
        return LIVE[0]
