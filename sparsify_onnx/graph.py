"""Loading an ONNX model and indexing its graph.

`load_model(path)` is the pipeline's first stage: it reads the model (external
data included), runs shape inference, and returns a `Loaded` value with the
index every later stage uses: producers, consumers, initializer arrays (weights
and Constant outputs), and the inferred shape of every value.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import SparsifyError

# input index of the weight for the ops we sparsify
WEIGHT_INPUT = {"MatMul": 1, "Gemm": 1, "Conv": 1}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


@dataclass
class Loaded:
    """A model and the index of its graph. Treat as read-only; stages build new ones."""
    model: onnx.ModelProto
    path: Path | None = None
    sha256: str | None = None
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # initializers + Constant outputs
    shapes: dict[str, tuple] = field(default_factory=dict)  # value name -> dims (int or str/None)
    dtypes: dict[str, int] = field(default_factory=dict)  # value name -> onnx elem type
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = field(default_factory=dict)
    initializer_names: set[str] = field(default_factory=set)

    @property
    def graph(self) -> onnx.GraphProto:
        return self.model.graph

    def node_name(self, node: onnx.NodeProto) -> str:
        return node.name or f"{node.op_type}:{node.output[0]}"

    def is_weight(self, name: str) -> bool:
        return name in self.weights

    def opset(self, domain: str = "") -> int:
        for o in self.model.opset_import:
            if o.domain in (domain, "ai.onnx" if domain == "" else domain):
                return o.version
        return 0


def index_model(model: onnx.ModelProto, path: Path | None = None, sha256: str | None = None,
                infer_shapes: bool = True) -> Loaded:
    """Build the graph index for an in-memory model."""
    if infer_shapes:
        try:
            if model.ByteSize() > 1_800_000_000:  # protobuf's 2 GB limit: infer on the graph without weights
                light = onnx.ModelProto()
                light.CopyFrom(model)
                for t in light.graph.initializer:
                    t.ClearField("raw_data")
                    t.ClearField("float_data")
                inferred = onnx.shape_inference.infer_shapes(light, data_prop=False)
            else:
                inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # shape inference is best effort
            inferred = model
    else:
        inferred = model
    g = model.graph
    lo = Loaded(model=model, path=path, sha256=sha256)
    for init in g.initializer:
        lo.weights[init.name] = numpy_helper.to_array(init)
        lo.initializer_names.add(init.name)
        lo.shapes[init.name] = tuple(init.dims)
        lo.dtypes[init.name] = init.data_type
    _index_nodes(lo)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            if t.elem_type:
                lo.dtypes.setdefault(vi.name, t.elem_type)
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
        lo.shapes.setdefault(vi.name, dims)
        lo.dtypes.setdefault(vi.name, t.elem_type)
    for name, arr in lo.weights.items():
        lo.shapes.setdefault(name, tuple(arr.shape))
    return lo


def _index_nodes(lo: Loaded) -> None:
    """Fill Constant values, producers and consumers from lo.model's nodes."""
    for node in lo.model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value":
                    lo.weights[node.output[0]] = numpy_helper.to_array(a.t)
        for o in node.output:
            if o:
                lo.producer[o] = node
        for i, name in enumerate(node.input):
            if name:
                lo.consumers.setdefault(name, []).append((node, i))


def with_new_values(lo: Loaded, model: onnx.ModelProto, edits: dict[str, np.ndarray],
                    tensors: dict[str, tuple] | None = None) -> Loaded:
    """The index of `model`, a copy of lo.model whose initializer *values* changed (shapes did not), and which
    may hold new tensors (`tensors`: name -> (shape, onnx elem type); new initializers are among `edits`):
    the inferred shapes and dtypes are reused instead of running shape inference again."""
    new = Loaded(model=model, path=lo.path, sha256=None, shapes=dict(lo.shapes), dtypes=dict(lo.dtypes),
                 initializer_names={t.name for t in model.graph.initializer})
    for name, (shape, dtype) in (tensors or {}).items():
        if shape is not None:
            new.shapes[name] = tuple(shape)
        if dtype:
            new.dtypes[name] = dtype
    new.weights = dict(lo.weights)
    new.weights.update(edits)
    _index_nodes(new)
    return new


def load_model(path: str | Path) -> Loaded:
    """Read an ONNX file (with external data) and index it. User errors are SparsifyError."""
    path = Path(path)
    if not path.exists():
        raise SparsifyError(f"model file not found: {path}", hint="check the path")
    if path.is_dir():
        raise SparsifyError(f"{path} is a directory, not an ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=True)
    except Exception as e:  # protobuf decode errors, missing external data
        raise SparsifyError(f"cannot read ONNX model {path}: {type(e).__name__}: {e}",
                            hint="is this an .onnx file? is its external data file next to it?") from None
    if not model.graph.node:
        raise SparsifyError(f"{path} holds no graph nodes (empty or not an ONNX model)",
                            hint="export the model again, or check that the file is complete")
    try:  # the path form also checks models over 2 GB (external data)
        onnx.checker.check_model(str(path), full_check=False)
    except Exception as e:
        raise SparsifyError(f"{path} is not a valid ONNX model: {e}".splitlines()[0],
                            hint="run onnx.checker.check_model on it to see the whole problem") from None
    return index_model(model, path=path, sha256=sha256_file(path))


def save_model(model: onnx.ModelProto, path: str | Path) -> None:
    """Save, switching to an external data file when the model is over ~1.8 GB."""
    path = Path(path)
    size = model.ByteSize() if model.ByteSize() >= 0 else 1 << 62
    if size > 1_800_000_000 or _has_external(model):
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))


def _has_external(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def replace_initializer(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    """Replace (or add) an initializer in place, keeping its position."""
    t = numpy_helper.from_array(array, name)
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(t)
            return
    model.graph.initializer.append(t)
