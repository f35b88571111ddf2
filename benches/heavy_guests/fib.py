import wit_world

class WitWorld(wit_world.WitWorld):
    def fib(self, n: int) -> int:
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a
