"""Endless signal sources for the firmware simulation: a finite scene played in a loop."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def render_looped(
    render: Callable[[int, int], np.ndarray], total: int, start: int, n: int
) -> np.ndarray:
    """Samples start..start+n of a scene of `total` samples repeated end to end."""
    if n < 0:
        raise ValueError("n must be >= 0")
    parts = []
    pos, left = start % total, n
    while left > 0:
        take = min(left, total - pos)
        parts.append(render(pos, pos + take))
        pos, left = (pos + take) % total, left - take
    return np.concatenate(parts) if parts else np.zeros(0)
