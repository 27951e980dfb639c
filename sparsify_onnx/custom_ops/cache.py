"""Keyed, atomic compile cache for object files.

key = sha256(rendered source + full compiler command (paths of the source and output replaced by
placeholders) + compiler version + onnxruntime header version + package version + extra).
Each entry is a directory ``<root>/obj/<key[:2]>/<key>/`` built in a temporary directory next
to it and moved into place with ``os.replace`` while holding a per-key ``fcntl`` lock, so
concurrent builds never see half-written objects. ``SPARSIFY_CACHE_DIR`` moves the root
(default ``~/.cache/sparsify-onnx``).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    d = os.environ.get("SPARSIFY_CACHE_DIR")
    return Path(d).expanduser() if d else Path.home() / ".cache" / "sparsify-onnx"


def package_version() -> str:
    try:
        from importlib.metadata import version
        return version("sparsify-onnx")
    except Exception:
        return "0+unknown"


def cache_key(source_text: str, command: list[str], *, compiler_version: str, ort_version: str | int,
              extra: str = "") -> str:
    h = hashlib.sha256()
    for part in (source_text, "\0".join(command), compiler_version, str(ort_version), package_version(), extra):
        h.update(part.encode())
        h.update(b"\1")
    return h.hexdigest()


class CompileCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else cache_root()
        self.hits = 0
        self.misses = 0

    def entry(self, key: str) -> Path:
        return self.root / "obj" / key[:2] / key

    @contextmanager
    def _lock(self, key: str):
        d = self.root / "locks"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"{key}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def lookup(self, key: str, filename: str) -> Path | None:
        p = self.entry(key) / filename
        return p if p.is_file() else None

    def get_or_build(self, key: str, filename: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """Path of ``filename`` in the entry for ``key``; ``build(tmp_dir)`` writes it there on a miss.

        Returns (path, hit). An exception from ``build`` leaves nothing in the cache.
        """
        final = self.entry(key)
        if (final / filename).is_file():
            self.hits += 1
            return final / filename, True
        final.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(key):
            if (final / filename).is_file():
                self.hits += 1
                return final / filename, True
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=final.parent))
            try:
                build(tmp)
                if not (tmp / filename).is_file():
                    raise RuntimeError(f"compile cache: build did not produce {filename}")
                if final.exists():
                    shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        self.misses += 1
        return final / filename, False
