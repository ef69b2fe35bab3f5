# yolocc developer commands. Each target creates .venv at the repo root when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c constraints.txt -e ".[ultralytics,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p runs/demo
	$(BIN)/yolocc yolov8n.yaml -p prune:0.25 -p fuse-bn -o runs/demo/yolov8n-pruned.onnx \
		--report runs/demo/report.json --report runs/demo/report.md

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf runs .pytest_cache
