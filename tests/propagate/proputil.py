"""Helpers for propagation / compaction tests: tiny models built with onnx.helper."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sparsify_onnx.annotate import Annotated
from sparsify_onnx.graph import index_model
from sparsify_onnx.spec import Spec

OPSET = 17


def annotated_from(model: onnx.ModelProto, seeds=None) -> Annotated:
    lo = index_model(model)
    return Annotated(source=lo, loaded=lo, spec=Spec(), selections={}, tesas=dict(seeds or {}))


def make_model(nodes, inputs, outputs, inits=(), opset=OPSET, check=True) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if check:
        onnx.checker.check_model(m, full_check=True)
    return m


def vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def run(model: onnx.ModelProto, feeds: dict, threads: int = 1):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def ffn_model(hidden=16, inter=32, prune_cols=(), prune_bias=True, seed=0, ln=False, batch="batch",
              seq="seq"):
    """x[b, s, H] -> MatMul W1 -> +b1 -> Gelu(erf form) -> MatMul W2 -> +b2 -> (+x -> LayerNorm)."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((hidden, inter)) / np.sqrt(hidden)).astype(np.float32)
    b1 = (rng.standard_normal(inter) * 0.1 + 0.05).astype(np.float32)
    w2 = (rng.standard_normal((inter, hidden)) / np.sqrt(inter)).astype(np.float32)
    b2 = (rng.standard_normal(hidden) * 0.1).astype(np.float32)
    cols = list(prune_cols)
    w1[:, cols] = 0
    if prune_bias:
        b1[cols] = 0
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h0"], name="ffn1/MatMul"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="ffn1/Add"),
        helper.make_node("Div", ["h1", "sqrt2"], ["g0"], name="gelu/Div"),
        helper.make_node("Erf", ["g0"], ["g1"], name="gelu/Erf"),
        helper.make_node("Add", ["g1", "one"], ["g2"], name="gelu/Add"),
        helper.make_node("Mul", ["h1", "g2"], ["g3"], name="gelu/Mul"),
        helper.make_node("Mul", ["g3", "half"], ["g4"], name="gelu/Mul_1"),
        helper.make_node("MatMul", ["g4", "W2"], ["o0"], name="ffn2/MatMul"),
        helper.make_node("Add", ["o0", "b2"], ["o1"], name="ffn2/Add"),
    ]
    inits = [init("W1", w1), init("b1", b1), init("W2", w2), init("b2", b2),
             init("sqrt2", np.array(1.4142135, np.float32)), init("one", np.array(1.0, np.float32)),
             init("half", np.array(0.5, np.float32))]
    out = "o1"
    if ln:
        nodes += [helper.make_node("Add", ["o1", "x"], ["r"], name="res/Add"),
                  helper.make_node("LayerNormalization", ["r", "ln_s", "ln_b"], ["y"], name="ln", axis=-1,
                                   epsilon=1e-5)]
        inits += [init("ln_s", np.ones(hidden, np.float32)), init("ln_b", np.zeros(hidden, np.float32))]
        out = "y"
    return make_model(nodes, [vi("x", [batch, seq, hidden])], [vi(out, [batch, seq, hidden])], inits)


# ---- single-op soundness harness ------------------------------------------------------------
def random_mask(rng, shape, kind=None):
    """A random boolean mask: elementwise, or structured (whole slices along random axes)."""
    shape = tuple(shape)
    if not shape:
        return np.array(rng.random() < 0.8)
    kind = kind or rng.choice(["elem", "axes", "axes", "dense"])
    if kind == "dense":
        return np.ones(shape, bool)
    if kind == "elem":
        return rng.random(shape) < 0.6
    m = np.ones(shape, bool)
    for ax, n in enumerate(shape):
        if n > 1 and rng.random() < 0.6:
            keep = rng.random(n) < 0.5
            m &= keep.reshape([n if k == ax else 1 for k in range(len(shape))])
    return m


def check_single_op(node, data_inputs, const_inputs=None, out_shapes=None, *, rng=None, draws=4,
                    opset=OPSET, in_dtypes=None, out_dtype=TensorProto.FLOAT, seed_nonzero=None, seed_used=None,
                    domain_opsets=None, atol=1e-5):
    """Propagate through one node with random masks, then check against onnxruntime.

    data_inputs: {name: shape} (random float graph inputs with random nonzero masks);
    const_inputs: {name: array} (initializers); out_shapes: {name: shape or None}.
    Checks: every output element marked zero is zero when dead inputs are zeroed; perturbing
    input elements marked unused changes no used output element. Returns the Propagated.
    """
    from sparsify_onnx.propagate import propagate
    from sparsify_onnx.tesa import TeSA
    rng = rng or np.random.default_rng(0)
    const_inputs = const_inputs or {}
    in_dtypes = in_dtypes or {}
    out_shapes = out_shapes or {o: None for o in node.output if o}
    inputs = [vi(n, list(s), in_dtypes.get(n, TensorProto.FLOAT)) for n, s in data_inputs.items()]
    odt = out_dtype if isinstance(out_dtype, dict) else {}
    outputs = [vi(n, s if s is None else list(s), odt.get(n, out_dtype if not odt else TensorProto.FLOAT))
               for n, s in out_shapes.items()]
    inits = [init(n, a) for n, a in const_inputs.items()]
    g = helper.make_graph([node], "single", inputs, outputs, initializer=inits)
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (domain_opsets or {}).items()]
    model = helper.make_model(g, opset_imports=ops)
    model.ir_version = 8
    an = annotated_from(model)
    lo = an.loaded
    seeds = {}
    for n, s in data_inputs.items():
        nz = seed_nonzero[n] if seed_nonzero and n in seed_nonzero else random_mask(rng, s)
        seeds[n] = TeSA(name=n, shape=tuple(s), nonzero=nz, used=np.ones(tuple(s), bool))
    for n in out_shapes:
        s = lo.shapes.get(n)
        if s is None or any(not isinstance(d, int) for d in s):
            continue
        u = seed_used[n] if seed_used and n in seed_used else random_mask(rng, s)
        seeds[n] = TeSA(name=n, shape=tuple(s), nonzero=np.ones(tuple(s), bool), used=u)
    an.tesas = seeds
    p = propagate(an)
    for d in range(draws):
        feeds = {}
        for n, s in data_inputs.items():
            dt = in_dtypes.get(n, TensorProto.FLOAT)
            if dt == TensorProto.FLOAT:
                v = rng.standard_normal(s).astype(np.float32)
            elif dt == TensorProto.BOOL:
                v = rng.random(s) < 0.5
            else:
                v = rng.integers(-3, 4, s).astype(helper.tensor_dtype_to_np_dtype(dt))
            live = np.broadcast_to(p.tesas[n].live, p.tesas[n].mask_shape)
            v = np.where(np.broadcast_to(live, v.shape), v, np.zeros((), v.dtype)).astype(v.dtype)
            feeds[n] = v
        base = run(model, feeds)
        for o, val in base.items():
            t = p.tesas[o]
            nz = np.broadcast_to(t.nonzero, t.mask_shape)
            nz = np.broadcast_to(nz, val.shape) if nz.shape != val.shape else nz
            bad = (~nz) & (val != 0)
            assert not bad.any(), f"{node.op_type}: output {o} marked zero but non-zero at {np.argwhere(bad)[:5]}"
        # perturb the unused elements of one input at a time (the others keep their pruned values:
        # an element is unused given that every dead element elsewhere is zero)
        for n, v in feeds.items():
            t = p.tesas[n]
            unused = ~np.broadcast_to(np.broadcast_to(t.used, t.mask_shape), v.shape)
            if not unused.any() or v.dtype != np.float32:
                continue
            pert = dict(feeds)
            noise = rng.standard_normal(v.shape).astype(np.float32) * 3
            pert[n] = np.where(unused, noise, v).astype(v.dtype)
            after = run(model, pert)
            for o, val in base.items():
                t = p.tesas[o]
                used = np.broadcast_to(np.broadcast_to(t.used, t.mask_shape), val.shape)
                a, b = val[used], after[o][used]
                ok = np.allclose(a, b, rtol=1e-4, atol=atol, equal_nan=True)
                assert ok, f"{node.op_type}: perturbing unused elements of {n} changed used output {o}"
    return p


# ---- a BERT-like encoder (torch-export style) ------------------------------------------------
def encoder_model(layers=2, hidden=32, heads=4, inter=64, *, seed=0, prune=None, attention_mask=True,
                  batch="batch", seq="seq", opset=OPSET, dtype=np.float32):
    """x[b, s, H] (+ attention_mask[b, s]) -> `layers` BERT encoder layers -> y[b, s, H].

    prune: {"ffn1_cols": {layer: cols}, "v_heads": {layer: heads}, "qk_heads": {layer: heads},
            "prune_bias": True} zeroes the weight columns (and their bias entries).
    Q's reshape target comes from a Shape -> Gather -> Unsqueeze -> Concat chain; K's and V's are
    constants [0, 0, heads, dh]; the merge back uses Concat(b, s, H) on odd layers and [0, 0, -1] on even.
    """
    prune = prune or {}
    rng = np.random.default_rng(seed)
    dh = hidden // heads
    nodes, inits = [], []
    cnt = [0]

    def const(name, arr):
        inits.append(init(name, np.asarray(arr)))
        return name

    def node(op, ins, outs=None, **kw):
        cnt[0] += 1
        outs = outs or [f"t{cnt[0]}"]
        nodes.append(helper.make_node(op, ins, outs, name=f"/n{cnt[0]}/{op}", **kw))
        return outs[0] if len(outs) == 1 else outs

    def linear(x, k, n, name, cols=(), bias_cols=None):
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dtype)
        b = (rng.standard_normal(n) * 0.1).astype(dtype)
        cols = list(cols)
        if cols:
            w[:, cols] = 0
            if prune.get("prune_bias", True):
                b[cols] = 0
        mm = node("MatMul", [x, const(f"{name}.weight", w)], [f"{name}/MatMul_out"])
        return node("Add", [mm, const(f"{name}.bias", b)], [f"{name}/Add_out"])

    def head_cols(hs):
        return [h * dh + d for h in hs for d in range(dh)]

    def layer_norm(x, name):
        return node("LayerNormalization", [x, const(f"{name}.weight", np.ones(hidden, dtype)),
                                           const(f"{name}.bias", (rng.standard_normal(hidden) * 0.02).astype(dtype))],
                    axis=-1, epsilon=1e-12)

    const("c_heads_dh", np.array([0, 0, heads, dh], np.int64))
    const("c_merge", np.array([0, 0, -1], np.int64))
    const("c_sqrt_dh", np.array(np.sqrt(dh), dtype))
    const("c_sqrt2", np.array(np.sqrt(2.0), dtype))
    const("c_one", np.array(1.0, dtype))
    const("c_half", np.array(0.5, dtype))
    const("c_neg", np.array(-10000.0, dtype))
    inputs = [vi("x", [batch, seq, hidden])]
    mask_add = None
    if attention_mask:
        inputs.append(vi("attention_mask", [batch, seq]))
        m = node("Unsqueeze", ["attention_mask", const("c_ax12", np.array([1, 2], np.int64))])
        inv = node("Sub", ["c_one", m])
        mask_add = node("Mul", [inv, "c_neg"])
    x = "x"
    for L in range(layers):
        p = f"encoder.layer.{L}"
        qk = prune.get("qk_heads", {}).get(L, [])
        vh = prune.get("v_heads", {}).get(L, [])
        q = linear(x, hidden, hidden, f"{p}.attention.self.query", head_cols(qk))
        k = linear(x, hidden, hidden, f"{p}.attention.self.key", head_cols(qk))
        v = linear(x, hidden, hidden, f"{p}.attention.self.value", head_cols(vh))
        shp = node("Shape", [x])
        b0 = node("Gather", [shp, const(f"{p}.i0", np.array(0, np.int64))], axis=0)
        s0 = node("Gather", [shp, const(f"{p}.i1", np.array(1, np.int64))], axis=0)
        b1 = node("Unsqueeze", [b0, const(f"{p}.ax0a", np.array([0], np.int64))])
        s1 = node("Unsqueeze", [s0, const(f"{p}.ax0b", np.array([0], np.int64))])
        qshape = node("Concat", [b1, s1, const(f"{p}.nh", np.array([heads], np.int64)),
                                 const(f"{p}.dh", np.array([dh], np.int64))], axis=0)
        qh = node("Transpose", [node("Reshape", [q, qshape])], perm=[0, 2, 1, 3])
        kh = node("Transpose", [node("Reshape", [k, "c_heads_dh"])], perm=[0, 2, 3, 1])
        vh_ = node("Transpose", [node("Reshape", [v, "c_heads_dh"])], perm=[0, 2, 1, 3])
        sc = node("Div", [node("MatMul", [qh, kh]), "c_sqrt_dh"])
        if mask_add is not None:
            sc = node("Add", [sc, mask_add])
        pr = node("Softmax", [sc], axis=-1)
        ctx = node("Transpose", [node("MatMul", [pr, vh_])], perm=[0, 2, 1, 3])
        if L % 2:
            mshape = node("Concat", [b1, s1, const(f"{p}.H", np.array([hidden], np.int64))], axis=0)
            ctx2 = node("Reshape", [ctx, mshape])
        else:
            ctx2 = node("Reshape", [ctx, "c_merge"])
        ao = linear(ctx2, hidden, hidden, f"{p}.attention.output.dense")
        h1 = layer_norm(node("Add", [ao, x]), f"{p}.attention.output.LayerNorm")
        f1 = linear(h1, hidden, inter, f"{p}.intermediate.dense", prune.get("ffn1_cols", {}).get(L, []))
        g = node("Mul", [node("Mul", [f1, node("Add", [node("Erf", [node("Div", [f1, "c_sqrt2"])]), "c_one"])]),
                         "c_half"])
        f2 = linear(g, inter, hidden, f"{p}.output.dense")
        x = layer_norm(node("Add", [f2, h1]), f"{p}.output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["y"], name="/out/Identity"))
    g = helper.make_graph(nodes, "encoder", inputs, [vi("y", [batch, seq, hidden])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def encoder_feeds(model, batch=2, seq=7, seed=0):
    rng = np.random.default_rng(seed)
    hidden = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][-1]
    feeds = {"x": rng.standard_normal((batch, seq, hidden)).astype(np.float32)}
    if len(model.graph.input) > 1:
        m = np.ones((batch, seq), np.float32)
        m[0, -2:] = 0
        feeds["attention_mask"] = m
    return feeds


def conv_model(c_in=4, c_mid=8, c_out=6, *, prune=(), bn_shift_zero=True, residual=None, seed=0, hw=6):
    """x[b, c_in, hw, hw] -> Conv1 -> BN -> Relu -> Conv2 (-> + residual) -> y.

    prune: output channels of Conv1 zeroed (weights and bias). bn_shift_zero: BN's bias and running
    mean are zero on those channels (a channel-pruned BN), so the channels stay zero through BN.
    residual: None | "input" (Relu output + x: a residual with a graph input; needs c_mid == c_in)
              | "output" (Conv2 output + x; needs c_out == c_in).
    """
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((c_mid, c_in, 3, 3)) * 0.3).astype(np.float32)
    b1 = (rng.standard_normal(c_mid) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((c_out, c_mid, 3, 3)) * 0.3).astype(np.float32)
    b2 = (rng.standard_normal(c_out) * 0.1).astype(np.float32)
    scale = (rng.random(c_mid) + 0.5).astype(np.float32)
    beta = (rng.standard_normal(c_mid) * 0.1).astype(np.float32)
    mean = (rng.standard_normal(c_mid) * 0.1).astype(np.float32)
    var = (rng.random(c_mid) + 0.5).astype(np.float32)
    cols = list(prune)
    w1[cols] = 0
    b1[cols] = 0
    if bn_shift_zero:
        beta[cols] = 0
        mean[cols] = 0
    nodes = [helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
                              ["n1"], name="bn"),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu")]
    h = "r1"
    if residual == "input":
        nodes.append(helper.make_node("Add", ["r1", "x"], ["a1"], name="res_in"))
        h = "a1"
    nodes.append(helper.make_node("Conv", [h, "conv2.weight", "conv2.bias"], ["c2"], name="conv2", pads=[1, 1, 1, 1]))
    out = "c2"
    if residual == "output":
        nodes.append(helper.make_node("Add", ["c2", "x"], ["y"], name="res_out"))
        out = "y"
    inits = [init("conv1.weight", w1), init("conv1.bias", b1), init("bn.weight", scale), init("bn.bias", beta),
             init("bn.running_mean", mean), init("bn.running_var", var), init("conv2.weight", w2),
             init("conv2.bias", b2)]
    return make_model(nodes, [vi("x", ["batch", c_in, hw, hw])], [vi(out, ["batch", c_out, hw, hw])], inits)


def assert_same_outputs(a_model, b_model, feeds, rtol=1e-5, atol=1e-6):
    a, b = run(a_model, feeds), run(b_model, feeds)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=rtol, atol=atol)
