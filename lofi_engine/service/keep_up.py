"""What to tell a user whose radio cannot keep up: how fast this machine composes with their variant, measured,
and what would keep up."""

from __future__ import annotations

TOO_SLOW = "TOO_SLOW"
"""The code of the `service_warning` that says it (the music goes on: the radio plays its rotation)."""
INT8_SPEEDUP = 2.1
"""small-int8 against small (fp32) on a CPU, composing the radio's windows: 1.94 against 0.92 seconds a second of
music at full size on 2 cores (`make bench`)."""


def too_slow_advice(variant: str, device: str, realtime_factor: float) -> str:
    """One sentence: the measured speed, what the radio does meanwhile, and what would keep up."""
    speed = f"{variant} composes at {1 / realtime_factor:.2f}× real time here ({realtime_factor:.2f} s a second of music)"
    meanwhile = "the radio repeats what it has made (its rotation) until each new window joins"
    if variant == "small" and device in ("cpu", "auto"):
        expected = realtime_factor / INT8_SPEEDUP
        verdict = "should keep up" if expected < 1.0 else "is about twice as fast, which may not be enough"
        return (f"{speed}: {meanwhile}; small-int8 {verdict} (≈ {expected:.2f} s a second of music): "
                'set model.variant = "small-int8" in setup() (lofi serve: --variant small-int8)')
    return f"{speed}: {meanwhile}; a faster machine would keep up (nothing smaller than {variant} is offered)"
