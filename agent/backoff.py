"""Capped exponential back-off, shared by the pollers and the publisher.

After paho's ``_reconnect_wait``: the delay doubles from ``initial`` up to ``maximum`` and
resets on success. Jitter is deterministic per instance (a seed) so that hundreds of meters
that failed together do not all retry on the same tick, yet tests stay reproducible.
"""

from __future__ import annotations


class Backoff:
    def __init__(self, initial: float = 1.0, maximum: float = 300.0, factor: float = 2.0,
                 jitter: float = 0.1, seed: int = 0):
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.failures = 0
        self._rng = (seed * 2654435761 + 1) & 0xFFFFFFFF

    def _unit_noise(self) -> float:
        # xorshift32: a few instructions, no random module state shared between instances.
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x & 0xFFFFFFFF
        return self._rng / 0xFFFFFFFF

    def failure(self) -> float:
        """Record a failure and return how long to wait before the next attempt."""
        self.failures += 1
        base = min(self.maximum, self.initial * self.factor ** (self.failures - 1))
        return min(self.maximum, base * (1.0 + self.jitter * self._unit_noise()))

    def success(self) -> None:
        self.failures = 0

    @property
    def delay(self) -> float:
        """The current nominal delay (without jitter); 0 when healthy."""
        if self.failures == 0:
            return 0.0
        return min(self.maximum, self.initial * self.factor ** (self.failures - 1))
