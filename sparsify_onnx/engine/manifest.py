"""manifest.json: versions, file hashes, source hashes, targets and the per-node plan."""
from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..graph import sha256_file

FORMAT = 1
MANIFEST = "manifest.json"


def versions() -> dict:
    import numpy
    import onnx
    import onnxruntime

    from .. import __version__
    return {"sparsify_onnx": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "numpy": numpy.__version__, "python": sys.version.split()[0], "platform": platform.platform()}


def hash_tree(root: Path, skip: set[str] = frozenset({MANIFEST})) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            if rel not in skip:
                out[rel] = sha256_file(p)
    return out


def write_manifest(root: Path, data: dict) -> dict:
    manifest = {"format": FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": versions(), **data, "files": hash_tree(root)}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, default=json_default) + "\n")
    return manifest


def json_default(o):
    """numpy scalars/arrays, tuples and paths in plan data become plain JSON."""
    import numpy as np
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    return str(o)


def read_manifest(root: Path) -> dict:
    from ..errors import SparsifyError
    p = root / MANIFEST
    if not p.exists():
        raise SparsifyError(f"{root} is not an engine directory: no {MANIFEST}",
                            hint="create one with `sparsify-onnx convert MODEL SPEC -o DIR`")
    try:
        m = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SparsifyError(f"{p} is not valid JSON ({e})", hint="convert the model again") from None
    if m.get("format") != FORMAT:
        raise SparsifyError(f"{p} has format {m.get('format')!r}; this sparsify-onnx reads format {FORMAT}",
                            hint="convert the model again with this version")
    return m
