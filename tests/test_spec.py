"""Spec parsing and validation: every error carries the file's line number and a hint."""
from __future__ import annotations

import textwrap

import pytest

from sparsify_onnx.errors import SparsifyError
from sparsify_onnx.pattern import Pattern
from sparsify_onnx.spec import Rule, Selector, Spec, load_spec, parse_spec

DESIGN_SPEC = """\
version: 1
rules:                                   # applied in order; a later rule wins
  - select: {node: "/m/encoder/layer.*/intermediate/dense/MatMul", input: 1}
    pattern: block                       # dense | unstructured | block | nm | tile | channel
    block: [32, 32]                      # in the tensor's stored layout
    sparsity: 0.9                        # prune to this fraction of zeros ...
    method: magnitude                    # ... by magnitude (default) or random
  - select: {tensor: "fc2.weight"}       # glob over tensor names
    pattern: nm
    n: 2
    m: 4                                 # groups run along the reduction axis
  - select: {op: Gemm, input: 1}
    pattern: channel
    axis: 0
    sparsity: 0.5
  - select: {node: "/m/decoder/layers.*/fc2/MatMul", input: 0}
    dynamic: true                        # activation sparsity found at run time
exclude:
  - {node: "*pooler*"}
propagate: true
"""


def err(text: str) -> SparsifyError:
    with pytest.raises(SparsifyError) as ei:
        parse_spec(textwrap.dedent(text), path="spec.yaml")
    e = ei.value
    assert e.hint, f"error without hint: {e}"
    return e


# ---------------------------------------------------------------------------- good specs

def test_design_spec_parses():
    s = parse_spec(DESIGN_SPEC, path="spec.yaml")
    assert isinstance(s, Spec) and s.version == 1 and s.propagate is True
    assert len(s.rules) == 4
    r1, r2, r3, r4 = s.rules
    assert r1 == Rule(index=1, line=3, select=Selector(node="/m/encoder/layer.*/intermediate/dense/MatMul", input=1),
                      pattern=Pattern("block", block=(32, 32)), sparsity=0.9, method="magnitude")
    assert r2.select == Selector(tensor="fc2.weight") and r2.pattern == Pattern("nm", n=2, m=4)
    assert r2.sparsity is None and r2.line == 8
    assert r3.select == Selector(op="Gemm", input=1) and r3.pattern == Pattern("channel", axis=0)
    assert r3.sparsity == 0.5 and r3.line == 12
    assert r4.dynamic and r4.pattern.kind == "unstructured" and r4.select.input == 0 and r4.line == 16
    assert s.exclude == [Selector(node="*pooler*")] and s.exclude[0].line == 19
    assert s.sha256 and len(s.sha256) == 64 and s.text == DESIGN_SPEC


def test_load_spec_from_file(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text(DESIGN_SPEC)
    s = load_spec(p)
    assert s.path == p and len(s.rules) == 4
    assert s.rule_where(s.rules[1]) == f"{p}:8 (rule 2)"


def test_tile_random_seed_propagate_false():
    s = parse_spec("version: 1\nrules:\n  - select: {tensor: 'w*'}\n    pattern: tile\n    granularity: 16\n"
                   "    sparsity: 0.5\n    method: random\n    seed: 7\npropagate: false\n")
    r = s.rules[0]
    assert r.pattern == Pattern("tile", granularity=16) and r.method == "random" and r.seed == 7
    assert s.propagate is False and s.exclude == []


def test_nm_with_matching_sparsity_and_integer_zero_sparsity():
    s = parse_spec("version: 1\nrules:\n  - select: {tensor: w}\n    pattern: nm\n    n: 1\n    m: 4\n"
                   "    sparsity: 0.75\n  - select: {tensor: v}\n    pattern: unstructured\n    sparsity: 0\n")
    assert s.rules[0].sparsity == 0.75 and s.rules[1].sparsity == 0.0


# ---------------------------------------------------------------------------- file-level errors

def test_missing_file(tmp_path):
    with pytest.raises(SparsifyError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_file(text, tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    with pytest.raises(SparsifyError, match="empty") as ei:
        load_spec(p)
    assert "version: 1" in ei.value.hint


def test_malformed_yaml_has_line():
    e = err("""\
        version: 1
        rules:
          - select: {tensor: "a"
            pattern: block
        """)
    assert "malformed YAML" in e.message
    assert e.where.startswith("spec.yaml:")
    assert int(e.where.split(":")[1].split()[0]) in (3, 4, 5)


def test_bad_indentation_line():
    e = err("version: 1\nrules:\n  - select: {tensor: a}\n   pattern: block\n")
    assert "malformed YAML" in e.message and e.where == "spec.yaml:4"


def test_tab_indentation():
    e = err("version: 1\nrules:\n\t- select: {tensor: a}\n")
    assert e.where == "spec.yaml:3" and "tabs" in e.hint


def test_yaml_merge_keys_may_be_overridden():
    s = parse_spec("version: 1\nrules:\n  - &b\n    select: {tensor: a}\n    pattern: block\n    block: [4, 4]\n"
                   "    sparsity: 0.5\n  - <<: *b\n    select: {tensor: b}\n")
    assert s.rules[1].select == Selector(tensor="b") and s.rules[1].pattern == Pattern("block", block=(4, 4))
    assert s.rules[1].sparsity == 0.5


def test_non_scalar_key():
    e = err("version: 1\n? [a]\n: 1\n")
    assert "plain word" in e.message and e.where == "spec.yaml:2"


def test_duplicate_key():
    e = err("version: 1\nrules:\n  - select: {tensor: a}\n    pattern: dense\n    pattern: block\n")
    assert "duplicate key `pattern`" in e.message and e.where == "spec.yaml:5"


def test_top_level_not_mapping():
    e = err("- a\n- b\n")
    assert "mapping" in e.message


def test_missing_version():
    e = err("rules:\n  - select: {tensor: a}\n    pattern: dense\n")
    assert "version" in e.message and e.where == "spec.yaml:1"


@pytest.mark.parametrize("v", ["2", "'1'", "1.0", "true"])
def test_bad_version(v):
    e = err(f"rules:\n  - select: {{tensor: a}}\n    pattern: dense\nversion: {v}\n")
    assert "version" in e.message and e.where == "spec.yaml:4"


def test_unknown_top_key_suggests_closest():
    e = err("version: 1\nrule:\n  - select: {tensor: a}\n    pattern: dense\n")
    assert "unknown key `rule`" in e.message and e.where == "spec.yaml:2"
    assert "`rules`" in e.hint


def test_rule_key_at_top_level():
    e = err("version: 1\nrules:\n  - select: {tensor: a}\n    pattern: dense\nsparsity: 0.5\n")
    assert "unknown key `sparsity`" in e.message and e.where == "spec.yaml:5"
    assert "rule" in e.hint


def test_missing_rules_and_empty_rules():
    e = err("version: 1\n")
    assert "missing `rules`" in e.message
    e = err("version: 1\nrules: []\n")
    assert "empty" in e.message and e.where == "spec.yaml:2"
    e = err("version: 1\nrules: {select: {tensor: a}}\n")
    assert "list" in e.message and e.where == "spec.yaml:2"


def test_bad_propagate():
    e = err("version: 1\nrules:\n  - select: {tensor: a}\n    pattern: dense\npropagate: maybe\n")
    assert "propagate" in e.message and e.where == "spec.yaml:5"


# ---------------------------------------------------------------------------- rule errors

RULE_HEAD = "version: 1\nrules:\n  - select: {tensor: a}\n"


def rule_err(body: str) -> SparsifyError:
    return err(RULE_HEAD + textwrap.indent(textwrap.dedent(body), "    "))


def test_rule_not_mapping():
    e = err("version: 1\nrules:\n  - just a string\n")
    assert e.where == "spec.yaml:3 (rule 1)"


def test_unknown_rule_key_suggests_closest():
    e = rule_err("pattern: block\nblock: [4, 4]\nsparsty: 0.5\n")
    assert "unknown key `sparsty`" in e.message and e.where == "spec.yaml:6 (rule 1)"
    assert "did you mean `sparsity`" in e.hint


def test_selector_key_in_rule_points_into_select():
    e = rule_err("pattern: dense\nnode: foo\n")
    assert e.where == "spec.yaml:5 (rule 1)" and "inside `select:`" in e.hint


def test_second_rule_numbered():
    e = err(RULE_HEAD + "    pattern: dense\n  - select: {tensor: b}\n    pattern: nm\n    n: 2\n")
    assert e.where == "spec.yaml:6 (rule 2)" and "`m`" in e.message  # the `pattern: nm` line


def test_missing_select():
    e = err("version: 1\nrules:\n  - pattern: dense\n")
    assert "select" in e.message and e.where == "spec.yaml:3 (rule 1)"


@pytest.mark.parametrize("sel,msg", [
    ("{}", "needs `tensor` or `node`"),
    ("{tensor: a, node: b}", "not both"),
    ("{tensor: a, op: MatMul}", "`op` cannot be combined"),
    ("{tensor: a, input: 1}", "`input` cannot be combined"),
    ("{input: 1}", "needs `tensor` or `node`"),
    ("{node: n, input: -1}", "input index"),
    ("{node: n, input: x}", "input index"),
    ("{node: n, input: true}", "input index"),
    ("{tensor: 3}", "non-empty string"),
    ("{tensor: ''}", "non-empty string"),
    ("{nod: n}", "unknown key `nod`"),
    ("tensor_a", "must be a mapping"),
])
def test_bad_selectors(sel, msg):
    e = err(f"version: 1\nrules:\n  - pattern: dense\n    select: {sel}\n")
    assert msg in e.message, e.message
    assert e.where == "spec.yaml:4 (rule 1)"


def test_unknown_selector_key_hint():
    e = err("version: 1\nrules:\n  - pattern: dense\n    select: {nod: n}\n")
    assert "`node`" in e.hint


def test_op_alone_and_op_with_input_allowed():
    s = parse_spec("version: 1\nrules:\n  - select: {op: Conv}\n    pattern: dense\n"
                   "  - select: {op: Gemm, input: 1}\n    pattern: dense\n")
    assert s.rules[0].select == Selector(op="Conv") and s.rules[1].select == Selector(op="Gemm", input=1)


def test_missing_pattern():
    e = rule_err("sparsity: 0.5\n")
    assert "no `pattern`" in e.message and e.where == "spec.yaml:3 (rule 1)"


def test_unknown_pattern_suggests():
    e = rule_err("pattern: blocks\n")
    assert "unknown pattern" in e.message and "did you mean `block`" in e.hint
    assert e.where == "spec.yaml:4 (rule 1)"


@pytest.mark.parametrize("body,line,msg", [
    ("pattern: block\n", 4, "needs `block"),
    ("pattern: block\nblock: [32]\n", 5, "two positive integers"),
    ("pattern: block\nblock: [0, 4]\n", 5, "two positive integers"),
    ("pattern: block\nblock: [4, 2.5]\n", 5, "two positive integers"),
    ("pattern: block\nblock: 32\n", 5, "two positive integers"),
    ("pattern: nm\nm: 4\n", 4, "needs `n`"),
    ("pattern: nm\nn: 2\n", 4, "needs `m`"),
    ("pattern: nm\nn: 0\nm: 4\n", 5, "positive integer"),
    ("pattern: nm\nn: 2.0\nm: 4\n", 5, "positive integer"),
    ("pattern: nm\nn: 4\nm: 2\n", 5, "smaller than m"),
    ("pattern: nm\nn: 2\nm: 4\nsparsity: 0.9\n", 7, "fixes the sparsity"),
    ("pattern: tile\n", 4, "needs `granularity`"),
    ("pattern: tile\ngranularity: -1\n", 5, "positive integer"),
    ("pattern: channel\n", 4, "needs `axis`"),
    ("pattern: channel\naxis: x\n", 5, "integer"),
    ("pattern: unstructured\nblock: [4, 4]\n", 5, "applies to pattern block"),
    ("pattern: block\nblock: [4, 4]\nn: 2\n", 6, "applies to pattern nm"),
    ("pattern: dense\ngranularity: 4\n", 5, "applies to pattern tile"),
    ("pattern: dense\naxis: 0\n", 5, "applies to pattern channel"),
    ("pattern: unstructured\nsparsity: 1\n", 5, "[0, 1)"),
    ("pattern: unstructured\nsparsity: 1.5\n", 5, "[0, 1)"),
    ("pattern: unstructured\nsparsity: -0.1\n", 5, "[0, 1)"),
    ("pattern: unstructured\nsparsity: 90\n", 5, "[0, 1)"),
    ("pattern: unstructured\nsparsity: high\n", 5, "number"),
    ("pattern: unstructured\nsparsity: true\n", 5, "number"),
    ("pattern: dense\nsparsity: 0.5\n", 5, "dense"),
    ("pattern: unstructured\nsparsity: 0.5\nmethod: magnitud\n", 6, "unknown method"),
    ("pattern: unstructured\nmethod: random\n", 5, "only when the rule prunes"),
    ("pattern: unstructured\nsparsity: 0.5\nseed: 1.5\n", 6, "`seed`"),
    ("pattern: unstructured\ndynamic: yes please\n", 5, "`dynamic`"),
    ("dynamic: true\nsparsity: 0.5\n", 5, "dynamic rule cannot have `sparsity`"),
])
def test_rule_field_errors(body, line, msg):
    e = rule_err(body)
    assert msg in e.message, e.message
    assert e.where == f"spec.yaml:{line} (rule 1)", e.where


def test_percentage_hint():
    e = rule_err("pattern: unstructured\nsparsity: 90\n")
    assert "fraction" in e.hint


def test_method_typo_suggests():
    e = rule_err("pattern: unstructured\nsparsity: 0.5\nmethod: magnitud\n")
    assert "did you mean `magnitude`" in e.hint


# ---------------------------------------------------------------------------- exclude

def test_exclude_errors_have_lines():
    e = err(RULE_HEAD + "    pattern: dense\nexclude:\n  - {nodes: x}\n")
    assert "unknown key `nodes`" in e.message and e.where == "spec.yaml:6 (exclude 1)"
    e = err(RULE_HEAD + "    pattern: dense\nexclude: {node: x}\n")
    assert "list" in e.message and e.where == "spec.yaml:5"
    e = err(RULE_HEAD + "    pattern: dense\nexclude:\n  - {node: x}\n  - pooler\n")
    assert "mapping" in e.message and e.where == "spec.yaml:7 (exclude 2)"


def test_exclude_where():
    s = parse_spec(RULE_HEAD + "    pattern: dense\nexclude:\n  - {op: Gemm}\n  - {tensor: 'b*'}\n", path="s.yaml")
    assert s.exclude_where(1) == "s.yaml:7 (exclude 2)"


def test_where_without_path():
    with pytest.raises(SparsifyError) as ei:
        parse_spec(RULE_HEAD + "    pattern: blok\n")
    assert ei.value.where == "line 4 (rule 1)"
