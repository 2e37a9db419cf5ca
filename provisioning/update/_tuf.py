"""python-tuf and securesystemslib names, imported from their documented public modules.

Those modules re-export without ``__all__``, which mypy's strict mode rejects;
importing them here once keeps every other module clean.
"""

from __future__ import annotations

from securesystemslib.signer import CryptoSigner, Signer  # type: ignore[attr-defined]
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig  # type: ignore[attr-defined]

__all__ = [
    "CryptoSigner",
    "FetcherInterface",
    "MetaFile",
    "Metadata",
    "Root",
    "Signed",
    "Signer",
    "Snapshot",
    "TargetFile",
    "Targets",
    "Timestamp",
    "Updater",
    "UpdaterConfig",
]
