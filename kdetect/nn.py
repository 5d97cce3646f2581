"""Arithmetic the networks share, kept out of any one kind so each builds without the others."""


def scaled(channels: int, multiplier: float, least: int) -> int:
    """A layer's channel count under a width multiplier, never below `least`."""
    return max(least, int(round(channels * multiplier)))
