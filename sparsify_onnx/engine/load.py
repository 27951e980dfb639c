"""Loading an engine: check every hash, register the op library, open a session."""
from __future__ import annotations

from pathlib import Path

from ..errors import SparsifyError
from ..graph import sha256_file
from .manifest import MANIFEST, hash_tree, read_manifest

LIBRARY = "libsparsify_ops.so"


def check_engine(path: str | Path) -> dict:
    """Verify that every file listed in the manifest is present and unmodified. Returns the manifest."""
    root = Path(path)
    if not root.is_dir():
        raise SparsifyError(f"engine directory not found: {root}",
                            hint="create one with `sparsify-onnx convert MODEL SPEC -o DIR`")
    m = read_manifest(root)
    files = m.get("files") or {}
    for rel, want in files.items():
        p = root / rel
        if not p.is_file():
            raise SparsifyError(f"engine file missing: {rel}", where=str(root),
                                hint="the engine is incomplete; convert the model again")
        got = sha256_file(p)
        if got != want:
            raise SparsifyError(f"engine file modified: {rel} (sha256 {got[:12]}..., manifest says {want[:12]}...)",
                                where=str(root), hint="refusing to load a tampered engine; convert the model again")
    extra = set(hash_tree(root, skip={MANIFEST, "report.json", "report.md", "report.html"})) - set(files)
    if extra:
        raise SparsifyError(f"engine holds files the manifest does not list: {', '.join(sorted(extra)[:5])}",
                            where=str(root), hint="remove them or convert the model again")
    return m


def default_providers(manifest: dict) -> list:
    import onnxruntime as ort
    avail = ort.get_available_providers()
    if manifest.get("cuda_built") and "CUDAExecutionProvider" in avail:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(path: str | Path, base=None):
    """SessionOptions with the engine's op library registered (for hosts that build their own session)."""
    import onnxruntime as ort
    so = base or ort.SessionOptions()
    lib = Path(path) / LIBRARY
    if lib.exists():
        so.register_custom_ops_library(str(lib.absolute()))
    return so


def load_engine(path: str | Path, providers: list | None = None, sess_options=None, *, check: bool = True):
    """Check the manifest hashes, register the op library, return an onnxruntime.InferenceSession."""
    import onnxruntime as ort
    root = Path(path)
    m = check_engine(root) if check else read_manifest(root)
    from ..codegen.cuda.nm import use_cusparselt
    use_cusparselt()  # n:m kernels on CUDA find libcusparseLt through the environment
    so = session_options(root, sess_options)
    providers = providers or default_providers(m)
    try:
        return ort.InferenceSession(str(root / "model.onnx"), sess_options=so, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        raise SparsifyError(f"onnxruntime could not open the engine: {e}", where=str(root),
                            hint="is the engine built for this machine (CPU arch, CUDA)? see manifest.json") from None
