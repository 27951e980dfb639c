"""sparsify-onnx: ONNX + sparsity spec -> onnxruntime engine with generated sparse kernels."""
__version__ = "0.1.0"

from .errors import SparsifyError  # noqa: E402


def load_engine(path, providers=None, sess_options=None):
    """Check an engine directory's hashes, register its op library, return an InferenceSession."""
    from .engine.load import load_engine as _load
    return _load(path, providers=providers, sess_options=sess_options)


__all__ = ["SparsifyError", "load_engine", "__version__"]
