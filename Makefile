# Two entry points for a fresh machine: `make demo` and `make test`.
# Each installs what it needs (venv with torch, wasm target, wasm tools) and
# skips what is already done.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
STAMP := .make
CARGO := cargo
RELEASE := --release --locked
WASM_TARGET := wasm32-wasip2
# Tools are built once; the manifests in configs/ point at dist/.
WASM_OUT := tools-wasm/target/$(WASM_TARGET)/release
WASM_DIST := tools-wasm/dist
HOST := target/release/mmsr-host

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Python scripts under tests/ find the venv; tch finds libtorch via .cargo/config.toml.
export MMSR_PYTHON := $(CURDIR)/$(VENV)/bin/python

.PHONY: help disk-check setup venv wasm-target tools guests guest-tests deps build test demo bench fmt clippy lint clean

help:
	@echo "make demo   # the whole demo chain on embedded defaults"
	@echo "make test   # set up everything and run the test suite"

$(STAMP):
	mkdir -p $(STAMP)

# The venv provides libtorch (torch==2.11.0 for tch 0.24) and the reference stack.
# --no-compile: byte-compiling torch's Python took ~30 s of CPU the build needs;
# Python compiles what the tests import on first use.
# --no-cache-dir: the stamp already skips a second install, and a cached copy
# of the wheels (torch and its CUDA libraries) would be 2.7 GB more on disk.
$(STAMP)/venv: requirements.txt | $(STAMP)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --no-compile --no-cache-dir -q -r requirements.txt
	ln -sfn "$$($(VENV)/bin/python -c 'import os, torch; print(os.path.relpath(os.path.dirname(torch.__file__), "$(VENV)"))')" $(VENV)/torch
	touch $@

venv: $(STAMP)/venv

$(STAMP)/wasm-target: | $(STAMP)
	rustup target add $(WASM_TARGET)
	touch $@

wasm-target: $(STAMP)/wasm-target

# cargo decides what is stale; copying keeps dist/ mtimes when nothing changed.
define wasm_build
	cd tools-wasm && CARGO_TARGET_DIR=$(CURDIR)/tools-wasm/target $(CARGO) build $(RELEASE) --target $(WASM_TARGET) $(1)
	mkdir -p $(WASM_DIST)
	for f in $(WASM_OUT)/*.wasm; do cmp -s "$$f" "$(WASM_DIST)/$$(basename $$f)" || cp "$$f" $(WASM_DIST)/; done
endef

# The search tools; the hostile test guests (tests/guests) only for `make test`.
GUESTS := $(notdir $(wildcard tests/guests/*))
tools: wasm-target
	$(call wasm_build,--workspace $(addprefix --exclude ,$(GUESTS)))

guests: tools
	$(call wasm_build,--workspace)

# While pip installs torch: the trainer's torch-free crates, and the wasm
# compiler to fill the second core. The rest (wasmtime, tantivy, the servers)
# build in `build`, beside the serial chain torch-sys -> tch -> trainer -> host.
BESIDE_PIP := tokenizers minijinja image@0.25 parquet safetensors plotters indicatif \
	cranelift-codegen wasmtime-environ
deps:
	$(CARGO) build $(RELEASE) $(addprefix -p ,$(BESIDE_PIP))

build: venv deps
	$(CARGO) build $(RELEASE)

# A fresh set-up used 8.0 GB (venv 4.9, build 3.1; pip's download, 2.7 GB
# in TMPDIR, is freed after the install). Warn before pip fails halfway.
SETUP_MB := 8500
disk-check:
	@test -e $(STAMP)/venv || { free=$$(df -Pm . | awk 'NR==2{print $$4}'); \
	  [ "$$free" -ge $(SETUP_MB) ] || echo "warning: $$free MB free on $$(df -P . | awk 'NR==2{print $$6}'); a fresh set-up needs about $(SETUP_MB) MB" >&2; }

# pip (mostly download and unpacking) overlaps the CPU-bound builds.
setup: disk-check
	$(MAKE) -j3 --output-sync=line venv tools deps
	$(MAKE) build

# The guest crates' own unit tests (parsers of the wire formats), natively:
# the wasm build above does not run them.
guest-tests: guests
	cd tools-wasm && CARGO_TARGET_DIR=$(CURDIR)/tools-wasm/target $(CARGO) test --locked --workspace $(addprefix --exclude ,$(GUESTS))

test: setup guests
	$(CARGO) test $(RELEASE) --workspace
	$(MAKE) guest-tests

demo: setup
	$(HOST) demo

bench: setup
	$(HOST) bench tools
	$(HOST) bench pipeline
	$(HOST) bench generate
	$(HOST) bench rollout

fmt:
	$(CARGO) fmt --all
	cd tools-wasm && $(CARGO) fmt --all

clippy: venv wasm-target
	$(CARGO) clippy $(RELEASE) --workspace --all-targets -- -D warnings
	cd tools-wasm && $(CARGO) clippy $(RELEASE) --target $(WASM_TARGET) -- -D warnings

lint: clippy
	$(CARGO) fmt --all --check

clean:
	rm -rf target tools-wasm/target $(WASM_DIST) $(STAMP)
