"""Where the data spark-serve ships lives, by one rule in the checkout, the wheel
and the image: ``entrypoint/data/`` beside this module.

It holds ``configs/`` (profiles, the hardware and families tables) and
``monitoring/`` (alert rules, dashboard). In the checkout both are links to the
top-level folders; ``pip install .`` copies them into the wheel as package data,
so an installed spark-serve (the image's) finds them next to its code.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def configs(*parts: str) -> Path:
    """A file or folder under the shipped ``configs/``."""
    return DATA.joinpath("configs", *parts)


def monitoring(*parts: str) -> Path:
    """A file or folder under the shipped ``monitoring/``."""
    return DATA.joinpath("monitoring", *parts)
