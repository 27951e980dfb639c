"""bench/cuda/ab.py with the block-column pairing turned off (session 10, run6: to time another change alone).
usage: python3 bench/cuda/s10/scripts/nopair.py <bench/cuda/ab.py arguments>"""
import runpy
import sys

import sparsify_onnx.codegen.cuda.wgmma as w

w.pair_block_columns = lambda *a, **k: None
sys.argv = ["ab.py"] + sys.argv[1:]
runpy.run_path("bench/cuda/ab.py", run_name="__main__")
