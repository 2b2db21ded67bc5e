"""Argument checks shared by the package's boundaries (one copy of each).

Validation happens once, where a value enters: the config (:func:`cfnet.config.validate`), the
command line, :meth:`cfnet.model.CFNet.forward`, the public ``correlation_*`` functions and
module constructors, the demo. The kernels behind them (``CorrelationFunction.evaluate``,
``cfnet.correlation._correlation_2d``, the SCM / ICM aggregations) trust their inputs.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["check_int", "check_length", "check_point"]


def check_int(value: object, name: str, minimum: int = 1, meaning: str = "") -> int:
    """``value`` as an int ``>= minimum`` (bools and floats refused); the error names ``name``.

    ``meaning`` is appended to the message, e.g. ``" (N in Eq. 5)"``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{meaning}, got {value!r}")
    return value


def check_length(length: object, name: str = "length") -> float:
    """A positive, finite axis length L (a number or a one-element tensor) as a float."""
    if isinstance(length, Tensor):
        if length.numel() != 1:
            raise ValueError(f"{name} must be a positive number, got a tensor of shape {tuple(length.shape)}")
        length = float(length)
    if isinstance(length, bool) or not isinstance(length, (int, float)) or not length > 0:
        raise ValueError(f"{name} must be a positive number (the axis length L), got {length!r}")
    if not math.isfinite(length):
        raise ValueError(f"{name} must be finite, got {length!r}")
    return float(length)


def _pixel_index(v: Any, name: str, integral_floats: bool) -> int:
    if isinstance(v, Tensor) and v.numel() == 1 and (integral_floats or not v.is_floating_point()):
        v = v.item()
    if integral_floats and isinstance(v, (float, np.floating)) and float(v).is_integer():
        v = int(v)
    try:  # ints, numpy integers, 0-d integer tensors; not bools (nor floats, unless allowed above)
        if isinstance(v, (bool, np.bool_)):
            raise TypeError
        return operator.index(v)
    except TypeError:
        raise ValueError(f"point {name} must be an integer pixel index, got {v!r}") from None


def check_point(
    point: Sequence[Any], height: int, width: int, what: str = "feature map", *, integral_floats: bool = False
) -> tuple[int, int]:
    """A pixel ``point = (row, col)`` inside a ``height × width`` map, as two ints.

    Accepts Python and numpy integers and one-element integer tensors; ``integral_floats`` also
    accepts whole floats (``3.0``), as a click position may arrive. ``what`` names the map.
    """
    try:
        row, col = point
    except (TypeError, ValueError):
        raise ValueError(f"point must be a pair (row, col), got {point!r}") from None
    row, col = _pixel_index(row, "row", integral_floats), _pixel_index(col, "col", integral_floats)
    for name, v, size in (("row", row, height), ("col", col, width)):
        if not 0 <= v < size:
            raise ValueError(
                f"point {(row, col)} lies outside the {height}x{width} {what} ({name} {v} not in [0, {size}))"
            )
    return row, col
