# bench/cuda/ab.py with the block-column pairing turned off (to time the prologue change alone)
import runpy, sys
import sparsify_onnx.codegen.cuda.wgmma as w
w.pair_block_columns = lambda *a, **k: None
sys.argv = ["ab.py"] + sys.argv[1:]
runpy.run_path("bench/cuda/ab.py", run_name="__main__")
