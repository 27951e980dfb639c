"""CPU kernel families (fp32, generated C++ specialised to each weight's pattern).

Each module registers one `KernelFamily` with ``@register_family``: ``cpu_bcsr`` (block),
``cpu_csr`` (unstructured), ``cpu_nm`` (n:m), ``cpu_tile`` (tile-wise). Dense nodes stay
onnxruntime MatMul, so there is no dense CPU family.
"""
