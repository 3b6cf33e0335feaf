"""Content-addressed cache of features and statistics.

Key = sha256 over (the exact image bytes, their shape and dtype) + the extractor fingerprint
(protocol and weights sha256). A hit returns exactly what a miss would have computed.
Entries are written atomically; a corrupt entry is treated as a miss and rewritten.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from grn.errors import UserError
from grn.fileio import atomic_write
from grn_eval.weights import cache_root


def content_key(images: np.ndarray, *parts: str) -> str:
    h = hashlib.sha256()
    arr = np.ascontiguousarray(images)
    h.update(f"{arr.shape}|{arr.dtype}|".encode())
    h.update(memoryview(arr).cast("B"))
    for p in parts:
        h.update(b"|" + str(p).encode())
    return h.hexdigest()


class FeatureCache:
    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else cache_root() / "features"
        self.enabled = enabled
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        path = self._path(key)
        if not self.enabled or not path.exists():
            return None
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            return None  # corrupt entry: recompute and overwrite

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            atomic_write(self._path(key), buf.getvalue())
        except OSError as e:
            raise UserError(f"the feature cache '{self.root}' cannot be written ({e.strerror or e}): set GRN_CACHE to "
                            f"a writable folder with free space") from e

    def features(self, extractor, images: np.ndarray) -> dict[str, np.ndarray]:
        """Features of `images` through the cache."""
        key = content_key(images, extractor.fingerprint)
        hit = self.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        out = extractor(images)
        self.put(key, out)
        return out
