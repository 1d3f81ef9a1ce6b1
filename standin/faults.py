"""Injected faults, switchable per shop at run time and reproducible from a seed.

Every request draws from the shop's own `random.Random(seed)` in arrival order, so the same seed
and the same request sequence give the same faults.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

HANG_LIMIT_S = 120.0  # a hung request is released after this, so threads are never lost for good


@dataclass
class FaultDecision:
    delay_s: float = 0.0
    error: bool = False  # answer 5xx
    hang: bool = False  # never answer (hold the connection until the client gives up)
    lose_response: bool = False  # apply a mutation, then drop the connection


@dataclass
class FaultConfig:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    hang_rate: float = 0.0
    lost_response_rate: float = 0.0
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def configure(
        self,
        latency_ms: float = 0,
        jitter_ms: float = 0,
        error_rate: float = 0,
        hang_rate: float = 0,
        lost_response_rate: float = 0,
        seed: int | None = None,
    ) -> None:
        for name, rate in (
            ("error_rate", error_rate),
            ("hang_rate", hang_rate),
            ("lost_response_rate", lost_response_rate),
        ):
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        with self._lock:
            self.latency_ms, self.jitter_ms = float(latency_ms), float(jitter_ms)
            self.error_rate, self.hang_rate = float(error_rate), float(hang_rate)
            self.lost_response_rate, self.seed = float(lost_response_rate), seed
            self._rng = random.Random(seed)

    @property
    def active(self) -> bool:
        return bool(
            self.latency_ms or self.jitter_ms or self.error_rate or self.hang_rate or self.lost_response_rate
        )

    def decide(self, is_mutation: bool) -> FaultDecision:
        """Draw this request's faults. Always draws the same number of values per request, so
        the sequence stays aligned with the seed whatever kind of request comes in."""
        if not self.active:
            return FaultDecision()
        with self._lock:
            jitter, e, h, lost = (self._rng.random() for _ in range(4))
        return FaultDecision(
            delay_s=max(0.0, self.latency_ms + (jitter * 2 - 1) * self.jitter_ms) / 1000.0,
            error=e < self.error_rate,
            hang=h < self.hang_rate,
            lose_response=is_mutation and lost < self.lost_response_rate,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "error_rate": self.error_rate,
            "hang_rate": self.hang_rate,
            "lost_response_rate": self.lost_response_rate,
            "seed": self.seed,
        }
