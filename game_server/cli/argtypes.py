"""argparse types shared by the server's and the bots' command lines."""

from __future__ import annotations

import argparse


def seconds_range(text: str) -> tuple[float, float]:
    """``"1.5"`` or ``"0.4-1.6"`` (seconds) to a (low, high) pair."""
    try:
        low_text, sep, high_text = text.partition("-")
        low = float(low_text)
        high = float(high_text) if sep else low
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SECONDS or LOW-HIGH, got {text!r}") from None
    if not 0 <= low <= high or not high < float("inf"):
        raise argparse.ArgumentTypeError(f"expected 0 <= LOW <= HIGH, got {text!r}")
    return low, high
