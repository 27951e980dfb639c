# The two commands a newcomer needs: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO   := build/demo

.PHONY: setup demo test test-gpu memcheck-gpu clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,models]'
	touch $@

demo: setup
	@mkdir -p $(DEMO)
	$(PY) -m models.bert --preset small --out $(DEMO)/bert_small.onnx
	$(VENV)/bin/sparsify-onnx convert $(DEMO)/bert_small.onnx models/specs/bert_block80.yaml \
	    -o $(DEMO)/engine --device cpu --input-shape input_ids=8x128 --input-shape attention_mask=8x128 --threads 2
	@echo "engine: $(DEMO)/engine (report: $(DEMO)/engine/report.md)"

test: setup
	$(PY) -m pytest -q -m "not gpu"

# on a GPU host with onnxruntime-gpu and pycuda
test-gpu: setup
	$(PY) -m pytest -q -m gpu

# the GPU kernel tests under compute-sanitizer's memcheck (on a GPU host; bench/cuda/memcheck_probe.cu shows it
# catching an out-of-bounds write)
memcheck-gpu: setup
	compute-sanitizer --tool memcheck --error-exitcode 9 $(PY) -m pytest -q -m gpu tests/test_cuda_kernels.py

clean:
	rm -rf build $(VENV) .pytest_cache
