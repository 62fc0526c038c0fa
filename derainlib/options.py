"""Checking a string option against its choices: one message for every module's options."""

from __future__ import annotations

from collections.abc import Collection


def check_choice(name: str, value: object, allowed: Collection[str]) -> None:
    """Raise a ValueError that names the option and its choices when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {tuple(allowed)}")
