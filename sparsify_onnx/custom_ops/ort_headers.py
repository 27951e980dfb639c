"""Find onnxruntime's C/C++ headers (they are not in the Python wheel).

Order: ``$SPARSIFY_ORT_INCLUDE``, ``/usr/include/onnxruntime``, then a cache
under the compile-cache directory filled from Debian's ``libonnxruntime-dev``
package of the ``trixie`` suite: ``apt-get update`` + ``apt-get download``
through a throw-away sources list (nothing is installed), then ``dpkg -x``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import SparsifyError

HEADER = "onnxruntime_c_api.h"
SUITE = "trixie"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


from .cache import cache_root


def _valid(d: Path) -> bool:
    return (d / HEADER).is_file() and (d / "onnxruntime_cxx_api.h").is_file()


def api_version(include: Path) -> int:
    """ORT_API_VERSION of the headers in ``include``."""
    text = (Path(include) / HEADER).read_text(errors="replace")
    m = re.search(r"#define\s+ORT_API_VERSION\s+(\d+)", text)
    if not m:
        raise SparsifyError(f"no ORT_API_VERSION in {include / HEADER}",
                            hint="point SPARSIFY_ORT_INCLUDE at onnxruntime's include directory")
    return int(m.group(1))


def _mirror() -> str:
    for f in (Path("/etc/apt/sources.list.d/debian.sources"),):
        try:
            for line in f.read_text().splitlines():
                if line.strip().startswith("URIs:"):
                    for uri in line.split(":", 1)[1].split():
                        if "security" not in uri:
                            return uri.rstrip("/")
        except OSError:
            pass
    try:
        for line in Path("/etc/apt/sources.list").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1].rstrip("/")
    except OSError:
        pass
    return DEFAULT_MIRROR


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SparsifyError(
            "could not fetch onnxruntime headers (libonnxruntime-dev from Debian " + SUITE + ")",
            details=f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}",
            hint="install onnxruntime's C/C++ headers and set SPARSIFY_ORT_INCLUDE to their directory")


def _download(dest: Path) -> Path:
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise SparsifyError("onnxruntime C/C++ headers not found and apt-get/dpkg are not available to fetch them",
                            hint="set SPARSIFY_ORT_INCLUDE to a directory holding onnxruntime_c_api.h")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ort-hdr-", dir=dest.parent) as tmp:
        t = Path(tmp)
        (t / "lists" / "partial").mkdir(parents=True)
        (t / "archives" / "partial").mkdir(parents=True)
        src = t / "sources.list"
        # signatures are checked: bookworm's debian-archive-keyring carries the trixie keys
        keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
        opt = f"[signed-by={keyring}] " if keyring.is_file() else ""
        src.write_text(f"deb {opt}{_mirror()} {SUITE} main\n")
        opts = [f"-o=Dir::Etc::SourceList={src}", "-o=Dir::Etc::SourceParts=/dev/null",
                f"-o=Dir::State::Lists={t / 'lists'}", f"-o=Dir::Cache::Archives={t / 'archives'}",
                "-o=Debug::NoLocking=1", "-o=APT::Sandbox::User=root", "-q"]
        _run(["apt-get", *opts, "update"])
        _run(["apt-get", *opts, "download", "libonnxruntime-dev"], cwd=t)
        debs = sorted(t.glob("libonnxruntime-dev_*.deb"))
        if not debs:
            raise SparsifyError("apt-get download produced no libonnxruntime-dev package",
                                hint="set SPARSIFY_ORT_INCLUDE to onnxruntime's include directory")
        x = t / "x"
        _run(["dpkg", "-x", str(debs[0]), str(x)])
        found = [p.parent for p in x.rglob(HEADER)]
        if not found:
            raise SparsifyError(f"{debs[0].name} holds no {HEADER}")
        inc = found[0]
        staged = t / "include"
        shutil.copytree(inc, staged)
        (staged / "SOURCE").write_text(debs[0].name + "\n")
        if dest.exists():
            shutil.rmtree(dest, ignore_errors=True)
        try:
            os.replace(staged, dest)
        except OSError:
            if not _valid(dest):
                raise
    return dest


def find_ort_include(*, download: bool = True) -> Path:
    """The directory holding onnxruntime_c_api.h and onnxruntime_cxx_api.h.

    ``$SPARSIFY_ORT_INCLUDE``, then /usr/include/onnxruntime, then the cache
    ``<cache dir>/ort-include/debian-trixie`` (filled on first use). Use `api_version`
    for the headers' ORT_API_VERSION (part of the compile-cache key).
    """
    env = os.environ.get("SPARSIFY_ORT_INCLUDE")
    if env:
        p = Path(env).expanduser()
        if not _valid(p):
            raise SparsifyError(f"SPARSIFY_ORT_INCLUDE={env} holds no {HEADER} / onnxruntime_cxx_api.h",
                                hint="point it at onnxruntime's include directory, or unset it")
        return p
    for p in (Path("/usr/include/onnxruntime"), Path("/usr/local/include/onnxruntime")):
        if _valid(p):
            return p
    dest = cache_root() / "ort-include" / f"debian-{SUITE}"
    if _valid(dest):
        return dest
    if not download:
        raise SparsifyError("onnxruntime C/C++ headers not found",
                            hint="set SPARSIFY_ORT_INCLUDE to onnxruntime's include directory")
    import fcntl
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if _valid(dest):
            return dest
        return _download(dest)
