"""Example models for sparsify-onnx, built with onnx.helper (no torch needed).

- `models.bert`: a BERT-style encoder shaped like a torch export (`build_bert`,
  `BertConfig`, presets tiny/small/base/minilm), random weights or real
  all-MiniLM-L6-v2 weights from a safetensors file.
- `models.mlp`: a MatMul+Add+Relu (or Gemm) chain (`build_mlp`).
- `models/specs/*.yaml`: example sparsity specs for both (`SPECS_DIR`).

Command line:

    python -m models.bert --preset small --out bert_small.onnx [--safetensors model.safetensors]
    python -m models.mlp --out mlp.onnx
"""
from pathlib import Path

SPECS_DIR = Path(__file__).resolve().parent / "specs"

_EXPORTS = {
    "BertConfig": "bert", "PRESETS": "bert", "build_bert": "bert", "bert_reference": "bert",
    "load_safetensors_weights": "bert", "find_minilm_safetensors": "bert", "random_weights": "bert",
    "build_mlp": "mlp", "mlp_reference": "mlp", "mlp_weights": "mlp",
}
__all__ = ["SPECS_DIR", *_EXPORTS]


def __getattr__(name):  # lazy, so `python -m models.bert` does not import models.bert twice
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
