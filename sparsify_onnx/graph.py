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
                infer_shapes: bool = True, input_dims: dict[str, tuple] | None = None,
                weights: dict[str, np.ndarray] | None = None) -> Loaded:
    """Build the graph index for an in-memory model. With `input_dims` ({graph input: concrete dims}), shapes are
    inferred as if the inputs had those dims (`with_input_dims`); the model itself is not changed. `weights`: the
    model's initializer arrays when the caller has them already (not converted again)."""
    inferred = _inferred(model, input_dims) if infer_shapes else model
    g = model.graph
    lo = Loaded(model=model, path=path, sha256=sha256)
    for init in g.initializer:
        lo.weights[init.name] = weights[init.name] if weights is not None else numpy_helper.to_array(init)
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


def with_input_dims(lo: Loaded, input_dims: dict[str, tuple]) -> Loaded:
    """The index of lo.model with its shapes inferred for concrete graph-input dims. An exported model's reshapes
    often take their target from the input's own shape (Shape -> Gather -> Concat: what torch.onnx's tracer
    writes for ``x.view(b, s, heads, -1)``); with symbolic inputs shape inference leaves such axes unknown, and
    the stages that link axes across the graph (compaction, the K permutation) cannot see, say, that 768
    features are 12 heads of 64. With concrete dims data propagation computes the targets. The analysis holds
    for other dims too: the stages link axes by how ops use them, and the model keeps its symbolic inputs."""
    return index_model(lo.model, lo.path, lo.sha256, input_dims=input_dims, weights=lo.weights)


def has_symbolic_inputs(model: onnx.ModelProto) -> bool:
    init = {t.name for t in model.graph.initializer}
    return any(not (d.HasField("dim_value") and d.dim_value > 0)
               for i in model.graph.input if i.name not in init for d in i.type.tensor_type.shape.dim)


def _inferred(model: onnx.ModelProto, input_dims: dict[str, tuple] | None) -> onnx.ModelProto:
    """onnx shape inference with data propagation, best effort (the model itself on failure). With concrete input
    dims, or over protobuf's 2 GB limit, it runs on `_light_copy` with the inputs' dims set there."""
    try:
        if not input_dims and model.ByteSize() <= 1_800_000_000:
            return onnx.shape_inference.infer_shapes(model, data_prop=True)
        light = _light_copy(model)
        for i in light.graph.input:
            dims = (input_dims or {}).get(i.name)
            if dims is not None and len(dims) == len(i.type.tensor_type.shape.dim):
                for d, v in zip(i.type.tensor_type.shape.dim, dims):
                    d.Clear()
                    d.dim_value = int(v)
        return onnx.shape_inference.infer_shapes(light, data_prop=True)
    except Exception:  # shape inference is best effort
        return model


def _light_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its weights or value_info: initializers that are small or integer (shape targets,
    indices, scalars: what data propagation reads) stay, the others become graph inputs of the same type and
    shape."""
    g = model.graph
    keep = [t for t in g.initializer if int(np.prod(t.dims)) <= 64 or t.data_type in (
        onnx.TensorProto.INT64, onnx.TensorProto.INT32)]
    kept, listed = {t.name for t in keep}, {i.name for i in g.input}
    inputs = list(g.input) + [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                              for t in g.initializer if t.name not in kept and t.name not in listed]
    graph = onnx.helper.make_graph(list(g.node), g.name, inputs, list(g.output), keep)  # (value_info: inferred)
    return onnx.helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                                  functions=list(model.functions))


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
