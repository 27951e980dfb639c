"""The YAML sparsity spec (user contract, DESIGN.md "The spec").

`load_spec(path)` reads the file with a safe loader and validates it field by
field; every error is a SparsifyError carrying the file's line number
(``where`` = "spec.yaml:LINE (rule N)") and a hint.

Accepted shape::

    version: 1                       # required, must be 1
    rules:                           # required, a non-empty list; later rules win
      - select: {tensor: GLOB}       # or {node: GLOB, op: OP, input: I} or {op: OP, input: I}
        pattern: block               # dense | unstructured | block | nm | tile | channel
        block: [32, 32]              # block: [h, w], positive ints (stored layout)
        n: 2                         # nm: 0 < n < m, groups of m along the reduction axis
        m: 4
        granularity: 64              # tile: G columns share one row mask (SC'20)
        axis: 0                      # channel: slices along this axis are kept or removed whole
        sparsity: 0.9                # optional, in [0, 1): prune to this share of zeros
        method: magnitude            # magnitude (default) | random; only with sparsity
        seed: 0                      # optional int (random method, tie breaking)
        dynamic: false               # true: activation sparsity found at run time
    exclude:                         # optional list of selectors
      - {node: "*pooler*"}
    propagate: true                  # optional bool

`pattern` may be left out only on a `dynamic` rule (it then means
"unstructured"). For `nm`, `sparsity` when given must equal 1 - n/m (to 1e-3).
"""
from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import SparsifyError
from .pattern import KINDS, Pattern


@dataclass(frozen=True)
class Selector:
    tensor: str | None = None  # glob over tensor names
    node: str | None = None  # glob over node names
    op: str | None = None  # op_type filter
    input: int | None = None  # input index; default: weight input of MatMul/Gemm/Conv
    line: int | None = field(default=None, compare=False)  # line in the YAML file (for errors)

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in (("tensor", self.tensor), ("node", self.node), ("op", self.op),
                                           ("input", self.input)) if v is not None]
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class Rule:
    index: int  # 1-based position in `rules`
    line: int  # line of the rule in the YAML file
    select: Selector
    pattern: Pattern
    sparsity: float | None = None  # fraction of zeros to prune to; None keeps existing zeros
    method: str = "magnitude"  # magnitude | random
    dynamic: bool = False
    seed: int = 0

    def where(self, path: str | Path | None) -> str:
        return f"{path}:{self.line} (rule {self.index})" if path else f"rule {self.index} (line {self.line})"


@dataclass
class Spec:
    version: int = 1
    rules: list[Rule] = field(default_factory=list)
    exclude: list[Selector] = field(default_factory=list)
    propagate: bool = True
    path: Path | None = None
    sha256: str | None = None
    text: str = ""

    def rule_where(self, rule: Rule) -> str:
        return rule.where(self.path)

    def exclude_where(self, index: int) -> str:
        """Location of the `index`-th (0-based) exclude entry, for errors."""
        sel = self.exclude[index]
        return _where(self.path, sel.line, f"exclude {index + 1}")


# ---------------------------------------------------------------------------------------------
# YAML with line numbers

TOP_KEYS = ("version", "rules", "exclude", "propagate")
RULE_KEYS = ("select", "pattern", "block", "n", "m", "granularity", "axis", "sparsity", "method", "seed",
             "dynamic")
SELECT_KEYS = ("tensor", "node", "op", "input")
PATTERN_PARAMS = {"block": ("block",), "nm": ("n", "m"), "tile": ("granularity",), "channel": ("axis",)}
METHODS = ("magnitude", "random")

EXAMPLE = """version: 1
rules:
  - select: {tensor: "fc1.weight"}
    pattern: block
    block: [32, 32]
    sparsity: 0.9"""


class _LineDict(dict):
    line: int = 0
    key_lines: dict


class _LineList(list):
    line: int = 0
    item_lines: list


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the (1-based) line of every mapping, key and list item."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    # duplicates are checked among the keys written in this mapping; keys merged in with `<<: *x`
    # may be overridden by them (YAML merge semantics)
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        kline = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise SparsifyError("a mapping key must be a plain word, not a list or mapping",
                                where=_where(loader.spec_path, kline), hint="check the indentation") from None
        if key in seen:
            raise SparsifyError(f"duplicate key `{key}` (first on line {seen[key]})",
                                where=_where(loader.spec_path, kline), hint="give each key once per mapping")
        seen[key] = kline
    loader.flatten_mapping(node)
    d = _LineDict()
    d.line = node.start_mark.line + 1
    d.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        d[key] = loader.construct_object(value_node, deep=True)
        d.key_lines[key] = key_node.start_mark.line + 1
    return d


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> _LineList:
    lst = _LineList(loader.construct_object(child, deep=True) for child in node.value)
    lst.line = node.start_mark.line + 1
    lst.item_lines = [child.start_mark.line + 1 for child in node.value]
    return lst


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _where(path, line, what: str | None = None) -> str:
    loc = f"{path}:{line}" if path else f"line {line}"
    return f"{loc} ({what})" if what else loc


def _closest(word, choices) -> str | None:
    m = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return m[0] if m else None


# ---------------------------------------------------------------------------------------------
# public API

def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file. Every problem is a SparsifyError with the line number."""
    p = Path(path)
    if not p.exists():
        raise SparsifyError(f"spec file not found: {p}", hint="check the path")
    if p.is_dir():
        raise SparsifyError(f"{p} is a directory, not a YAML spec file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SparsifyError(f"{p} is not a UTF-8 text file", hint="a spec is a YAML text file") from None
    except OSError as e:
        raise SparsifyError(f"cannot read spec {p}: {e.strerror or e}") from None
    return parse_spec(text, path=p)


def parse_spec(text: str, path: str | Path | None = None) -> Spec:
    """Parse and validate spec text; `path` is only used for messages and `Spec.path`."""
    path = Path(path) if path is not None else None
    name = str(path) if path is not None else "<spec>"
    loader = _LineLoader(text)
    loader.spec_path = path
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(x for x in (e.context, e.problem) if x) or "syntax error"
        hint = "check indentation, colons and quoting on or just before that line"
        if "'\\t'" in problem:
            hint = "YAML does not allow tabs for indentation; indent with spaces"
        raise SparsifyError(f"malformed YAML: {problem}", where=_where(path, line), hint=hint) from None
    except yaml.YAMLError as e:
        raise SparsifyError(f"malformed YAML: {e}", where=name, hint="check the file's syntax") from None
    finally:
        loader.dispose()
    if data is None:
        raise SparsifyError("the spec is empty", where=name,
                            hint="a spec needs at least `version: 1` and one rule, e.g.\n" + EXAMPLE)
    if not isinstance(data, _LineDict):
        raise SparsifyError(f"the spec must be a mapping with `version` and `rules`, not a {_kind(data)}",
                            where=_where(path, getattr(data, "line", 1)), hint="start from:\n" + EXAMPLE)
    v = _Validator(path)
    return v.spec(data, text)


def _kind(x) -> str:
    if isinstance(x, dict):
        return "mapping"
    if isinstance(x, list):
        return "list"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, (int, float)):
        return "number"
    if isinstance(x, str):
        return f"string ({x!r})" if len(x) < 40 else "string"
    if x is None:
        return "null (empty value)"
    return type(x).__name__


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _Validator:
    def __init__(self, path: Path | None):
        self.path = path

    def err(self, msg: str, line: int, what: str | None = None, hint: str | None = None):
        raise SparsifyError(msg, where=_where(self.path, line, what), hint=hint)

    def unknown_keys(self, d: _LineDict, valid, what: str | None, context: str):
        for k in d:
            if k in valid:
                continue
            line = d.key_lines.get(k, d.line)
            close = _closest(k, valid)
            hint = f"did you mean `{close}`? " if close else ""
            if context == "rule" and k in SELECT_KEYS:
                hint = f"`{k}` goes inside `select:`, e.g. select: {{{k}: ...}}. "
            elif context == "spec" and k in RULE_KEYS:
                hint = f"`{k}` belongs to a rule under `rules:`. "
            hint += "valid keys here: " + ", ".join(valid)
            self.err(f"unknown key `{k}` in {context}", line, what, hint)

    # -- top level ------------------------------------------------------------------------
    def spec(self, d: _LineDict, text: str) -> Spec:
        self.unknown_keys(d, TOP_KEYS, None, "spec")
        if "version" not in d:
            self.err("missing `version`", d.line, hint="add `version: 1` as the first line")
        ver = d["version"]
        if not _is_int(ver) or ver != 1:
            self.err(f"unsupported spec version {ver!r}", d.key_lines["version"],
                     hint="this sparsify-onnx reads `version: 1`")
        if "rules" not in d:
            self.err("missing `rules`", d.line, hint="add a list of rules, e.g.\n" + EXAMPLE)
        rules_v = d["rules"]
        rl = d.key_lines["rules"]
        if not isinstance(rules_v, _LineList):
            self.err(f"`rules` must be a list of rules, not a {_kind(rules_v)}", rl,
                     hint="write each rule as a list item starting with `- select: ...`")
        if not rules_v:
            self.err("`rules` is empty", rl, hint="add at least one rule, e.g.\n" + EXAMPLE)
        rules = [self.rule(r, i + 1, rules_v.item_lines[i]) for i, r in enumerate(rules_v)]
        exclude: list[Selector] = []
        if "exclude" in d:
            ex = d["exclude"]
            el = d.key_lines["exclude"]
            if ex is None:
                ex = _LineList()
                ex.item_lines = []
            if not isinstance(ex, _LineList):
                self.err(f"`exclude` must be a list of selectors, not a {_kind(ex)}", el,
                         hint='e.g. exclude: [{node: "*pooler*"}]')
            for i, s in enumerate(ex):
                exclude.append(self.selector(s, ex.item_lines[i], f"exclude {i + 1}"))
        propagate = True
        if "propagate" in d:
            propagate = d["propagate"]
            if not isinstance(propagate, bool):
                self.err(f"`propagate` must be true or false, not {propagate!r}", d.key_lines["propagate"],
                         hint="propagate: true runs sparsity propagation (the default); false skips it")
        return Spec(version=1, rules=rules, exclude=exclude, propagate=propagate, path=self.path,
                    sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), text=text)

    # -- selectors ------------------------------------------------------------------------
    def selector(self, s, line: int, what: str) -> Selector:
        if not isinstance(s, _LineDict):
            self.err(f"a selector must be a mapping such as {{tensor: \"fc1.weight\"}}, not a {_kind(s)}",
                     line, what, hint="use {tensor: GLOB}, {node: GLOB, op: OP, input: I} or {op: OP}")
        self.unknown_keys(s, SELECT_KEYS, what, "select")
        kl = s.key_lines
        for k in ("tensor", "node", "op"):
            if k in s and (not isinstance(s[k], str) or not s[k]):
                self.err(f"`{k}` must be a non-empty string, not {_kind(s[k])}", kl[k], what,
                         hint='quote globs that start with * or contain ": ", e.g. node: "*attn*"')
        if "input" in s and (not _is_int(s["input"]) or s["input"] < 0):
            self.err(f"`input` must be an input index (0, 1, 2, ...), not {s['input']!r}", kl["input"], what,
                     hint="MatMul B, Gemm B and Conv W are input 1")
        if "tensor" in s and "node" in s:
            self.err("a selector takes `tensor` or `node`, not both", s.line, what,
                     hint="write two rules, or select by node and input index")
        if "tensor" in s and ("op" in s or "input" in s):
            bad = "op" if "op" in s else "input"
            self.err(f"`{bad}` cannot be combined with `tensor`", kl[bad], what,
                     hint="`op` and `input` filter node selectors: {node: GLOB, op: OP, input: I}")
        if not any(k in s for k in ("tensor", "node", "op")):
            self.err("a selector needs `tensor` or `node` (or `op`)", s.line, what,
                     hint='e.g. {tensor: "fc1.weight"}, {node: "/layer.*/MatMul"} or {op: Gemm, input: 1}')
        return Selector(tensor=s.get("tensor"), node=s.get("node"), op=s.get("op"), input=s.get("input"),
                        line=s.line)

    # -- rules ----------------------------------------------------------------------------
    def rule(self, r, index: int, line: int) -> Rule:
        what = f"rule {index}"
        if not isinstance(r, _LineDict):
            self.err(f"a rule must be a mapping, not a {_kind(r)}", line, what, hint="start from:\n" + EXAMPLE)
        line = r.line
        self.unknown_keys(r, RULE_KEYS, what, "rule")
        kl = r.key_lines
        if "select" not in r:
            self.err("rule has no `select`", line, what, hint='add e.g. select: {tensor: "fc1.weight"}')
        select = self.selector(r["select"], kl["select"] if not isinstance(r["select"], _LineDict)
                               else r["select"].line, what)

        dynamic = r.get("dynamic", False)
        if not isinstance(dynamic, bool):
            self.err(f"`dynamic` must be true or false, not {dynamic!r}", kl["dynamic"], what,
                     hint="dynamic: true marks an activation whose sparsity is found at run time")

        if "pattern" not in r:
            if not dynamic:
                self.err("rule has no `pattern`", line, what,
                         hint="add pattern: one of " + ", ".join(KINDS))
            kind = "unstructured"
        else:
            kind = r["pattern"]
            if not isinstance(kind, str) or kind not in KINDS:
                close = _closest(kind, KINDS) if isinstance(kind, str) else None
                self.err(f"unknown pattern {kind!r}", kl["pattern"], what,
                         hint=(f"did you mean `{close}`? " if close else "") + "patterns: " + ", ".join(KINDS))
        # parameters that belong to another pattern
        for pk, params in PATTERN_PARAMS.items():
            if pk == kind:
                continue
            for p in params:
                if p in r:
                    self.err(f"`{p}` applies to pattern {pk}, but this rule's pattern is {kind}", kl[p], what,
                             hint=f"remove `{p}` or set pattern: {pk}")
        pat_kw: dict = {}
        if kind == "block":
            if "block" not in r:
                self.err("pattern block needs `block: [h, w]`", kl.get("pattern", line), what,
                         hint="e.g. block: [32, 32] (rows, columns in the tensor's stored layout)")
            b = r["block"]
            if not (isinstance(b, list) and len(b) == 2 and all(_is_int(x) and x > 0 for x in b)):
                self.err(f"`block` must be two positive integers [h, w], not {b!r}", kl["block"], what,
                         hint="e.g. block: [32, 32]")
            pat_kw["block"] = (int(b[0]), int(b[1]))
        elif kind == "nm":
            for p in ("n", "m"):
                if p not in r:
                    self.err(f"pattern nm needs `{p}`", kl.get("pattern", line), what,
                             hint="e.g. n: 2 and m: 4 (2 non-zeros in every group of 4)")
                if not _is_int(r[p]) or r[p] <= 0:
                    self.err(f"`{p}` must be a positive integer, not {r[p]!r}", kl[p], what,
                             hint="e.g. n: 2 and m: 4")
            if r["n"] >= r["m"]:
                self.err(f"n must be smaller than m (got n={r['n']}, m={r['m']})", kl["n"], what,
                         hint="n:m keeps n non-zeros in every group of m, e.g. n: 2, m: 4")
            pat_kw["n"], pat_kw["m"] = int(r["n"]), int(r["m"])
        elif kind == "tile":
            if "granularity" not in r:
                self.err("pattern tile needs `granularity`", kl.get("pattern", line), what,
                         hint="e.g. granularity: 64 (columns that share one row mask)")
            g = r["granularity"]
            if not _is_int(g) or g <= 0:
                self.err(f"`granularity` must be a positive integer, not {g!r}", kl["granularity"], what,
                         hint="e.g. granularity: 64")
            pat_kw["granularity"] = int(g)
        elif kind == "channel":
            if "axis" not in r:
                self.err("pattern channel needs `axis`", kl.get("pattern", line), what,
                         hint="e.g. axis: 0 (slices along axis 0 of the stored tensor are removed whole)")
            a = r["axis"]
            if not _is_int(a):
                self.err(f"`axis` must be an integer, not {a!r}", kl["axis"], what, hint="e.g. axis: 0")
            pat_kw["axis"] = int(a)
        pattern = Pattern(kind, **pat_kw)

        sparsity = None
        if "sparsity" in r:
            s = r["sparsity"]
            if not _is_number(s):
                self.err(f"`sparsity` must be a number in [0, 1), not {s!r}", kl["sparsity"], what,
                         hint="e.g. sparsity: 0.9 prunes 90% of the weights")
            if not (0 <= s < 1):
                self.err(f"`sparsity` must be in [0, 1), got {s}", kl["sparsity"], what,
                         hint="the fraction of zeros: 0.9 keeps 10% of the weights"
                              + ("; a percentage must be written as a fraction" if 1 <= s <= 100 else ""))
            sparsity = float(s)
            if dynamic:
                self.err("a dynamic rule cannot have `sparsity`", kl["sparsity"], what,
                         hint="dynamic sparsity is found at run time; remove `sparsity` or `dynamic`")
            if kind == "dense" and sparsity > 0:
                self.err("pattern dense cannot have a non-zero `sparsity`", kl["sparsity"], what,
                         hint="choose pattern unstructured, block, nm, tile or channel to prune")
            if kind == "nm":
                want = 1 - pat_kw["n"] / pat_kw["m"]
                if abs(sparsity - want) > 1e-3:  # 0.667 for 1:3 is fine
                    self.err(f"n:m {pat_kw['n']}:{pat_kw['m']} fixes the sparsity at {want:g}, "
                             f"but the rule asks for {sparsity:g}", kl["sparsity"], what,
                             hint=f"write sparsity: {want:.4g}, or change n and m")
        method = "magnitude"
        if "method" in r:
            method = r["method"]
            if method not in METHODS:
                close = _closest(method, METHODS) if isinstance(method, str) else None
                self.err(f"unknown method {method!r}", kl["method"], what,
                         hint=(f"did you mean `{close}`? " if close else "") + "methods: magnitude, random")
            if sparsity is None:
                self.err("`method` applies only when the rule prunes (has `sparsity`)", kl["method"], what,
                         hint="add `sparsity:` to prune, or remove `method`")
        seed = 0
        if "seed" in r:
            seed = r["seed"]
            if not _is_int(seed):
                self.err(f"`seed` must be an integer, not {seed!r}", kl["seed"], what, hint="e.g. seed: 0")
        return Rule(index=index, line=line, select=select, pattern=pattern, sparsity=sparsity, method=method,
                    dynamic=dynamic, seed=int(seed))
