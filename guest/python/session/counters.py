"""The resources of the `counters` interface: componentize-py finds an
exported interface's resource classes in a module of the interface's
name."""

from wit_world.exports import counters

# The values of the counters dropped so far, and how many are alive.
DROPPED = []
LIVE = [0]


class Counter(counters.Counter):
    def __init__(self, start: int) -> None:
        LIVE[0] += 1
        self.value = start

    def __del__(self) -> None:
        LIVE[0] -= 1
        DROPPED.append(self.value)

    def add(self, n: int) -> int:
        self.value += n
        return self.value

    def get(self) -> int:
        return self.value

    def fork(self) -> "Counter":
        return Counter(self.value)

    @classmethod
    def sum(cls, a: "Counter", b: "Counter") -> "Counter":
        return Counter(a.value + b.value)


class Tag(counters.Tag):
    def __init__(self, name: str) -> None:
        self.tag = name

    def name(self) -> str:
        return self.tag
