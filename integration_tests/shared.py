"""Constants and helpers shared by the cross-package tests."""

from __future__ import annotations

ARCHITECTURES = {"glow": "nfkit-glow-maf", "maf": "nfkit-glow-maf", "tarflow": "nfkit-tarflow",
                 "denseflow": "nfkit-denseflow", "realnvp": "nfkit-plugin-realnvp"}


def smallest_digits_preset(spec) -> str:
    """The architecture's smallest preset for the 8x8 digits."""
    for name in ("digits-tiny", "digits-small", "digits"):
        if name in spec.presets:
            return name
    raise AssertionError(f"architecture {spec.name!r} has no digits preset; presets: {sorted(spec.presets)}")
