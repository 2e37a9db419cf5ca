"""Run every benchmark in tests/perf and print their tables: ``python -m tests.perf``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"tests.perf.{info.name}")
            module.main()
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
