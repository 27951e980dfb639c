"""The CLI as a new user meets it: one clear message and exit 1 for user errors."""
from __future__ import annotations

import os
import subprocess
import sys

import onnx
import pytest

from helpers import BLOCK16_SPEC, linear_chain, write_spec


def cli(*args, env=None, cwd=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "sparsify_onnx", *map(str, args)], capture_output=True,
                          text=True, env=e, cwd=cwd, timeout=600)


@pytest.fixture
def mlp(tmp_path):
    p = tmp_path / "mlp.onnx"
    onnx.save(linear_chain((64, 96, 64)), p)
    return p


GOOD = BLOCK16_SPEC


def _user_error(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr  # one message (after any progress lines)
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def test_missing_model(tmp_path):
    _user_error(cli("inspect", tmp_path / "nope.onnx"), "model file not found")


def test_corrupt_model(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x08\x07garbage that is not a protobuf" * 10)
    _user_error(cli("inspect", p), str(p))


def test_bad_spec_key_has_line_number(tmp_path, mlp):
    sp = write_spec(tmp_path / "s.yaml", GOOD.replace("    sparsity: 0.8", "    sparsty: 0.8"))
    _user_error(cli("convert", mlp, sp, "-o", tmp_path / "e", "--device", "cpu"), "s.yaml:6", "sparsity")
    assert not (tmp_path / "e").exists()


def test_rule_selecting_nothing_names_close_nodes(tmp_path, mlp):
    sp = write_spec(tmp_path / "s.yaml", GOOD.replace("/layers.*/MatMul", "/layer.*/MatMull"))
    _user_error(cli("prune", mlp, sp, "-o", tmp_path / "p.onnx"), "rule 1", "/layers.0/MatMul")


def test_pattern_that_zeros_do_not_fit(tmp_path, mlp):
    sp = write_spec(tmp_path / "s.yaml", GOOD.replace("    sparsity: 0.8\n", ""))
    _user_error(cli("prune", mlp, sp, "-o", tmp_path / "p.onnx"), "layers.0.weight")


def test_missing_compiler(tmp_path, mlp):
    sp = write_spec(tmp_path / "s.yaml", GOOD)
    r = cli("convert", mlp, sp, "-o", tmp_path / "e", "--device", "cpu", "--policy", "always",
            env={"CXX": str(tmp_path / "no-such-g++"), "SPARSIFY_CACHE_DIR": str(tmp_path / "cache-nocxx")})
    _user_error(r, "no-such-g++")
    assert not (tmp_path / "e").exists()


def test_inspect_lists_weights(mlp):
    r = cli("inspect", mlp)
    assert r.returncode == 0, r.stderr
    assert "/layers.0/MatMul" in r.stdout and "layers.1.weight" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("PASSED")


def test_prune_then_convert_and_bench(tmp_path, mlp):
    sp = write_spec(tmp_path / "s.yaml", GOOD)
    r = cli("prune", mlp, sp, "-o", tmp_path / "p.onnx")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p.onnx").exists()
    r = cli("convert", mlp, sp, "-o", tmp_path / "e", "--device", "cpu", "--policy", "always",
            "--input-shape", "x=16x64")
    assert r.returncode == 0, r.stderr
    assert "PASSED" in r.stdout
    r = cli("bench", tmp_path / "e", "--repeat", "5", "--warmup", "1")
    assert r.returncode == 0, r.stderr
    assert "engine" in r.stdout
    # CUDA graphs need an engine built for CUDA (and a GPU): a CPU engine says so, and so does convert, before work
    _user_error(cli("bench", tmp_path / "e", "--cuda-graph"), "--cuda-graph needs an engine built for CUDA")
    _user_error(cli("convert", mlp, sp, "-o", tmp_path / "e2", "--device", "cpu", "--cuda-graph"),
                "--cuda-graph times the engine on the CUDA execution provider")
    assert not (tmp_path / "e2").exists()


def test_verify_command_and_wrong_source(tmp_path, mlp):
    sp = write_spec(tmp_path / "s.yaml", GOOD)
    r = cli("convert", mlp, sp, "-o", tmp_path / "e", "--device", "cpu", "--policy", "always", "--no-bench")
    assert r.returncode == 0, r.stderr
    r = cli("verify", tmp_path / "e")
    assert r.returncode == 0, r.stderr
    assert "max rel" in r.stdout
    other = tmp_path / "other.onnx"
    onnx.save(linear_chain((64, 96, 64), seed=7), other)
    _user_error(cli("verify", tmp_path / "e", "--model", other), "not the model this engine was converted from")


CHANNEL = """version: 1
rules:
  - select: {node: "/layers.0/MatMul"}
    pattern: channel
    axis: 1
    sparsity: 0.5
"""


def test_inspect_with_spec_shows_selection_and_propagation(tmp_path, mlp):
    sp = write_spec(tmp_path / "s.yaml", CHANNEL)
    r = cli("inspect", mlp, sp)
    assert r.returncode == 0, r.stderr
    assert "layers.0.weight" in r.stdout
    assert "layers.1.weight" in r.stdout  # propagation reaches the next layer's rows
    assert "PASSED" in r.stdout


def test_compact_command_writes_a_smaller_equivalent_model(tmp_path):
    import numpy as np
    import onnxruntime as ort
    from helpers import linear_chain
    m = linear_chain((64, 96, 64), act=None)  # no activation: zero bias entries keep channels dead
    for t in m.graph.initializer:
        if t.name == "layers.0.bias":
            t.ClearField("float_data")
            t.raw_data = np.zeros(96, np.float32).tobytes()
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    sp = write_spec(tmp_path / "s.yaml", CHANNEL)
    r = cli("compact", p, sp, "-o", tmp_path / "c.onnx")
    assert r.returncode == 0, r.stderr
    c = onnx.load(str(tmp_path / "c.onnx"))
    w1 = next(t for t in c.graph.initializer if t.name == "layers.1.weight")
    assert list(w1.dims) == [48, 64]
    r = cli("prune", p, sp, "-o", tmp_path / "p.onnx")
    assert r.returncode == 0, r.stderr
    x = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    a = ort.InferenceSession(str(tmp_path / "c.onnx")).run(None, {"x": x})[0]
    b = ort.InferenceSession(str(tmp_path / "p.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
