"""Writing the engine directory, atomically.

Everything is written into a temporary sibling directory which is renamed into
place only when complete: a failed convert leaves nothing at the target path.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import SparsifyError
from .manifest import MANIFEST


@contextmanager
def staging_dir(target: Path, *, force: bool = True):
    """Yield a temp dir next to `target`; on success move it into place."""
    target = Path(target).absolute()
    if target.exists():
        if not target.is_dir():
            raise SparsifyError(f"output path {target} exists and is not a directory", hint="choose another -o")
        if any(target.iterdir()) and not (target / MANIFEST).exists():
            raise SparsifyError(f"output directory {target} exists, is not empty and is not an engine",
                                hint="choose a new -o path; only an earlier engine is replaced")
        if not force:
            raise SparsifyError(f"output directory {target} exists", hint="pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
