"""Export a randomly initialised HF `BertModel` (or `GPT2Model`) to ONNX with torch.onnx, as a user would (GPU
host: torch, transformers and onnxscript are installed there).

    python3 bench/gpu/hf_export.py traced /tmp/hf-traced.onnx [--layers 4] [--dtype fp16] [--model gpt2]
    python3 bench/gpu/hf_export.py dynamo /tmp/hf-dynamo.onnx

traced: torch.onnx's tracer at opset 14 (dynamo=False): LayerNorms decomposed into ReduceMean/Sub/Pow/...,
        reshape targets read from Shape nodes, equal initializers read through Identity nodes; eager attention.
dynamo: torch.export at opset 18 (dynamo=True, the default of recent torch): LayerNormalization ops, node names
        like node_MatMul_89, linear weights as pre-transposed constants, equal initializers shared; sdpa attention.
Widths are BERT-base's (hidden 768, 12 heads, intermediate 3072), without the pooler, or GPT-2 small's (its
linears are Gemm nodes, Q, K and V one fused projection cut by a Split: select them with
`{op: Gemm, node: "*"}`); inputs input_ids and attention_mask with dynamic batch and sequence.
"""
from __future__ import annotations

import argparse

import torch
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model


class Encoder(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        kw = {"use_cache": False} if isinstance(self.m, GPT2Model) else {}
        return self.m(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exporter", choices=["traced", "dynamo"])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
    ap.add_argument("--model", choices=["bert", "gpt2"], default="bert")
    a = ap.parse_args()
    torch.manual_seed(0)
    attn = "eager" if a.exporter == "traced" else "sdpa"
    if a.model == "gpt2":
        cfg = GPT2Config(n_embd=768, n_layer=a.layers, n_head=12, attn_implementation=attn)
        m = GPT2Model(cfg).eval()
    else:
        cfg = BertConfig(hidden_size=768, num_hidden_layers=a.layers, num_attention_heads=12,
                         intermediate_size=3072, attn_implementation=attn)
        m = BertModel(cfg, add_pooling_layer=False).eval()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    m = Encoder(m.half() if a.dtype == "fp16" else m).to(dev)
    ids = torch.randint(0, cfg.vocab_size, (2, 16), device=dev)
    mask = torch.ones(2, 16, dtype=torch.int64, device=dev)
    names = dict(input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"])
    with torch.no_grad():
        if a.exporter == "traced":
            axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
            torch.onnx.export(m, (ids, mask), a.out, dynamo=False, opset_version=14, dynamic_axes=axes, **names)
        else:
            b, s = torch.export.Dim("batch"), torch.export.Dim("sequence", min=2, max=512)
            torch.onnx.export(m, (ids, mask), a.out, dynamo=True, opset_version=18,
                              dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}},
                              external_data=False, **names)
    print(f"wrote {a.out}: HF {type(m.m).__name__}, {a.layers} layers, {a.dtype}, {a.exporter} export")


if __name__ == "__main__":
    main()
