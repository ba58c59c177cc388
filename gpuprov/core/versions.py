"""Dotted version numbers (drivers, CUDA, toolkits) and how they compare."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)")


class VersionError(ValueError):
    """A string that should have been a dotted version number was not."""


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A dotted version; keeps the text as written so messages quote it exactly.

    Trailing zero components do not count ("570.26" == "570.26.0"), and each
    component compares as a number ("535.104.05" > "535.54.03").
    """

    text: str
    parts: tuple[int, ...] = field(repr=False)

    @property
    def major(self) -> int:
        return self.parts[0]

    @property
    def minor(self) -> int:
        return self.parts[1] if len(self.parts) > 1 else 0

    def _key(self) -> tuple[int, ...]:
        key = list(self.parts)
        while len(key) > 1 and key[-1] == 0:
            key.pop()
        return tuple(key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.text


def parse_version(text: str | Version) -> Version:
    """Parse "535.104.05", "12.4" or "v1.17.8"; raise VersionError otherwise."""
    if isinstance(text, Version):
        return text
    cleaned = str(text).strip()
    match = _VERSION.fullmatch(cleaned)
    if not match:
        raise VersionError(
            f"{text!r} is not a dotted version number (expected digits and dots, "
            f"like 535.104.05 or 12.4)"
        )
    number = match.group(1)
    return Version(number, tuple(int(part) for part in number.split(".")))


def major_minor(text: str | Version) -> Version:
    """The X.Y part of a version: CUDA 12.6.3 belongs to the 12.6 family."""
    version = parse_version(text)
    return parse_version(f"{version.major}.{version.minor}")
