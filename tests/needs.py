"""A test's outside tool: a skip on a developer's machine without it, a failure in CI.

CI installs every tool the suite uses (``.ci/run``), so a tool missing there
is a broken install, never a reason to pass by skipping.
"""

from __future__ import annotations

import os

import pytest


def need(present: bool, why: str) -> None:
    """Carry on when ``present``; else skip (outside CI) or fail (``CI`` set) saying ``why``."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(why, pytrace=False)
    pytest.skip(why)
