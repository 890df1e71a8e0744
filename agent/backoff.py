"""Capped exponential back-off, shared by the pollers and the publisher.

After paho's ``_reconnect_wait``: the nominal delay doubles from ``initial`` up to
``maximum`` and resets on success. Jitter is applied *after* the cap, so retries that
have reached the cap are spread too (applied before it, every retry at the cap was
exactly the cap):

- ``full_jitter=True`` (the publisher): the delay is uniform in [0, nominal], AWS's "full
  jitter". A fleet of gateways that lost the same broker comes back spread over the whole
  window instead of in waves.
- otherwise (the pollers): the delay is nominal x (1 + ``jitter`` x u), u uniform in
  [0, 1), so meters that failed together on one bus do not all retry on the same tick.

The random source is the operating system's (``random.Random()`` seeds itself from
``os.urandom``): a seed derived from a name collides across a fleet (issue 11: byte sums
of 9,999 gateway ids give 36 seeds). ``seed`` is for tests that want a fixed sequence.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 1.0, maximum: float = 300.0, factor: float = 2.0,
                 jitter: float = 0.1, seed: int | None = None, full_jitter: bool = False):
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.full_jitter = full_jitter
        self.failures = 0
        self._rng = random.Random(seed)

    def failure(self) -> float:
        """Record a failure and return how long to wait before the next attempt."""
        self.failures += 1
        nominal = self.delay
        if self.full_jitter:
            return self._rng.uniform(0.0, nominal)
        return nominal * (1.0 + self.jitter * self._rng.random())

    def success(self) -> None:
        self.failures = 0

    @property
    def delay(self) -> float:
        """The current nominal delay (before jitter); 0 when healthy."""
        if self.failures == 0:
            return 0.0
        # Capped exponent: factor ** failures overflows a float after ~1,000 failures.
        exponent = min(self.failures - 1, 1024)
        try:
            return min(self.maximum, self.initial * self.factor ** exponent)
        except OverflowError:
            return self.maximum
