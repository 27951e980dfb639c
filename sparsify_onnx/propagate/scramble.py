"""Tensor scrambling (SparTA): infer a rule for an op without one by running it.

For a node with no registered rule, `scramble_rule(engine, k)` builds a one-node model
(symbolic dims set to a small concrete size), and returns a rule that, each time it
runs, feeds onnxruntime several random draws with the dead input elements zeroed:

- forward: output elements that are zero in every draw become ``nonzero=False``;
- backward: an input element whose perturbation (one element at a time, the other
  inputs at their pruned values) never changes a used output element becomes
  ``used=False`` (only for inputs of at most ``max_elements`` elements).

It is empirical (a few random draws), so it is opt-in (``infer_rules=True`` /
``--infer-rules``). A node it cannot run is skipped with a log line.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .masks import fit

SYMBOLIC_SIZE = 2


def _concrete(dims):
    return tuple(d if isinstance(d, (int, np.integer)) and d > 0 else SYMBOLIC_SIZE for d in dims)


def _random(rng, shape, elem_type):
    dt = helper.tensor_dtype_to_np_dtype(elem_type)
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dt, np.integer):
        return rng.integers(1, 4, size=shape).astype(dt)
    return (rng.standard_normal(shape) + np.sign(rng.standard_normal(shape)) * 0.5).astype(dt)


def scramble_rule(engine, k: int, *, draws: int = 6, max_elements: int = 2048, seed: int = 0):
    node = engine.nodes[k]
    name = engine.node_names[k]
    lo = engine.loaded
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        engine.log.append(f"{name}: scrambling skipped (op with a subgraph)")
        return None
    inputs, feeds_const, shapes, types = [], {}, {}, {}
    for i, x in enumerate(node.input):
        if not x:
            continue
        s, t = lo.shapes.get(x), lo.dtypes.get(x)
        c = engine.consts.get(x)
        if c is not None:
            feeds_const[x] = c
            continue
        if s is None or not t:
            engine.log.append(f"{name}: scrambling skipped (no static shape/type for input {x})")
            return None
        shapes[x], types[x] = _concrete(s), t
        inputs.append(helper.make_tensor_value_info(x, t, list(shapes[x])))
    outputs = []
    for o in node.output:
        if not o:
            continue
        t = lo.dtypes.get(o)
        if not t:
            engine.log.append(f"{name}: scrambling skipped (no type for output {o})")
            return None
        outputs.append(helper.make_tensor_value_info(o, t, None))
    from onnx import numpy_helper
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in feeds_const.items()]
    g = helper.make_graph([node], "scramble", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=list(lo.model.opset_import))
    m.ir_version = lo.model.ir_version or 8
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(seed)
        sess.run(None, {x: _random(rng, shapes[x], types[x]) for x in shapes})
    except Exception as e:
        engine.log.append(f"{name}: scrambling skipped ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
        return None
    out_names = [o.name for o in outputs]
    data_inputs = list(shapes)

    def scrambled(ctx):
        rng = np.random.default_rng(seed)
        idx = {x: i for i, x in enumerate(node.input) if x}
        lives = {x: np.broadcast_to(ctx.live(idx[x]), shapes[x]) if ctx.live(idx[x]).ndim == len(shapes[x])
                 else np.ones(shapes[x], bool) for x in data_inputs}
        zero_all = None
        changed = {x: np.zeros(shapes[x], bool) for x in data_inputs}
        out_used = {}
        for d in range(draws):
            feeds = {x: np.where(lives[x], _random(rng, shapes[x], types[x]), np.zeros((), helper.tensor_dtype_to_np_dtype(types[x])))
                     for x in data_inputs}
            base = sess.run(None, feeds)
            zs = [np.asarray(v) == 0 for v in base]
            zero_all = zs if zero_all is None else [a & b for a, b in zip(zero_all, zs)]
            for j, o in enumerate(out_names):
                if o not in out_used:
                    u = ctx.out_used(list(node.output).index(o))
                    out_used[o] = np.broadcast_to(u, np.shape(base[j])) if u.ndim == np.ndim(base[j]) else \
                        np.ones(np.shape(base[j]), bool)
            if d >= 3:
                continue  # backward: a few draws, one element at a time
            for x in data_inputs:
                n = int(np.prod(shapes[x]))
                if n > max_elements or not np.issubdtype(feeds[x].dtype, np.floating):
                    changed[x][...] = True
                    continue
                flat = feeds[x].reshape(-1)
                for e in range(n):
                    if changed[x].reshape(-1)[e]:
                        continue
                    pert = dict(feeds)
                    f2 = flat.copy()
                    f2[e] = f2[e] + 1.5 + abs(f2[e])
                    pert[x] = f2.reshape(shapes[x])
                    after = sess.run(None, pert)
                    for j, o in enumerate(out_names):
                        a, b = np.asarray(base[j]), np.asarray(after[j])
                        diff = ~np.isclose(a, b, rtol=1e-6, atol=0, equal_nan=True)
                        if (diff & out_used[o]).any():
                            changed[x].reshape(-1)[e] = True
                            break
        for j, o in enumerate(out_names):
            i = list(node.output).index(o)
            m = fit(~zero_all[j], ctx.mshape_out(i))
            if m is not None:
                ctx.narrow_output(i, nonzero=m)
        for x in data_inputs:
            m = fit(changed[x], ctx.mshape_in(idx[x]))
            if m is not None:
                ctx.narrow_input(idx[x], used=m)

    scrambled.__name__ = f"scrambled_{node.op_type}"
    engine.log.append(f"{name}: rule inferred by tensor scrambling ({draws} draws)")
    return scrambled
