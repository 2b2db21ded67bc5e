"""Literal transcriptions of the paper's equations shared by several test modules."""

from __future__ import annotations

import math


def g_loop(theta: list[float], j: float, length: float) -> float:
    """Eq. 5, literally: A0 + Σ_n A_n sin(n ω' j + ψ_n), ω' = π/L (Eq. 4's period 2L)."""
    n_levels = (len(theta) - 1) // 2
    omega = math.pi / length
    value = theta[0]
    for n in range(1, n_levels + 1):
        value += theta[n] * math.sin(n * omega * j + theta[n_levels + n])
    return value
