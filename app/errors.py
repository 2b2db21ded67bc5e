"""The demo's one error type: bad input or an unusable checkpoint, worded for the user."""

from __future__ import annotations


class DemoError(ValueError):
    """Bad input or an unusable checkpoint; the message is shown to the user as is."""
