# hakube: `make up` runs the platform, `make test` runs every test (both install what they need).
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= /var/tmp/hakube-target
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: deps build up down test lint bench crds

deps:
	@scripts/install-deps.sh

build: deps
	cargo build --workspace --bins

# `hakube up`: the local HA cluster (network-namespace hosts, the operator, a stacked Cluster).
up: build
	$(CARGO_TARGET_DIR)/debug/hakube up

down:
	$(CARGO_TARGET_DIR)/debug/hakube down

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Lint first, then every suite; the test runner's summary line is the last thing printed.
test: build lint
	scripts/test.sh

bench: deps
	scripts/bench.sh
	scripts/bench-bringup.sh
	scripts/bench-failover.sh

# Regenerates the committed CRDs under config/crd from the operator's API types.
crds:
	HAKUBE_UPDATE_CRDS=1 cargo test -p hakube-operator-api --test crds
