# yolocc developer commands. Each target creates .venv at the repo root when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c constraints.txt -e ".[ultralytics,test,digits]"
	touch $(STAMP)

install: $(STAMP)

DIGITS := examples/digits/data/digits.yaml

# The bundled fixture data is regenerated (deterministically, in seconds) rather than committed.
$(DIGITS): examples/digits/make_dataset.py | $(STAMP)
	$(BIN)/python examples/digits/make_dataset.py

demo: $(STAMP) $(DIGITS)
	mkdir -p runs/demo
	$(BIN)/yolocc examples/digits/weights/yolov8n-digits.pt -p prune:0.1 -p int8 \
		--calib examples/digits/data/calib/images --data $(DIGITS) \
		-o runs/demo/yolov8n-digits-int8.onnx --report runs/demo/report.json --report runs/demo/report.md

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf runs .pytest_cache
