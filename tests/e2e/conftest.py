"""End-to-end tests: private network namespaces (root) and a headless Chromium peer.

The fixtures live in ``tests/netlab.py`` and ``tests/browser.py``; importing them
here makes them available to every test under ``tests/e2e``. A test that uses a
namespace is marked ``root`` automatically, so ``-m "not root"`` leaves it out.
"""

from __future__ import annotations

import pytest

from tests.browser import chromium_in, chromium_page, playwright_sync
from tests.netlab import booth_clinic, lo_ns, netlab

__all__ = ["booth_clinic", "chromium_in", "chromium_page", "lo_ns", "netlab", "playwright_sync"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = pytest.mark.root
    for item in items:
        if "netlab" in getattr(item, "fixturenames", ()) and "root" not in item.keywords:
            item.add_marker(root)
