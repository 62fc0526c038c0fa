"""The package's own text speaks to its users: no debugging leftovers, no files they do not have, no
words about how this project's own work was scheduled."""

from __future__ import annotations

import re
from pathlib import Path

import derainlib

PACKAGE = Path(derainlib.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))

#: Text that points at files outside the package a user does not have (cite paper, section, equation instead).
MISSING_FILES = re.compile(r"REFERENCE\.md|papers/|/work/shared|shared/")
#: Debugging leftovers.
LEFTOVERS = re.compile(r"#\s*(TEMP|XXX|HACK)\b")
#: How and where this project's work was scheduled: users run derainlib on their own machines.
SCHEDULING = re.compile(r"\bsessions?\b|\blent\b|when one is lent|the issue's target|our dev machines?|\bH100 for\b",
                        re.IGNORECASE)


def _hits(pattern: re.Pattern) -> list[str]:
    return [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}" for path in SOURCES
            for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]


def test_no_debugging_leftovers():
    assert _hits(LEFTOVERS) == []


def test_no_pointers_to_files_users_do_not_have():
    assert _hits(MISSING_FILES) == []


def test_no_internal_scheduling_language():
    assert _hits(SCHEDULING) == []
