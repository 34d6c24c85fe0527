# oras-cache — every routine task is a target. `make help` lists them.
SHELL := /bin/bash
export PATH := $(CURDIR)/.work/bin:/usr/local/go/bin:$(PATH)
export HELM_PLUGINS := $(CURDIR)/.work/helm-plugins
export GOFLAGS ?= -buildvcs=false
CHART := charts/oras-cache
# Tests start real registry processes and children: run them every time (GOTESTFLAGS= to use Go's cache).
GOTESTFLAGS ?= -count=1

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

tools: ## install pinned tools (helm, helm-unittest, oras, registry, kubeconform, staticcheck) into .work/bin
	bash ci/install-tools.sh

schema: ## regenerate values.schema.json, the README values table and the values.yaml comments from schema/values.go
	go run ./schema/gen -o $(CHART)/values.schema.json

golden: ## regenerate the webhook golden patch files under tests/go/webhook/testdata/golden
	go test ./tests/go/webhook/ -run 'TestGolden' -update

lint: ## gofmt, go vet, staticcheck (e2e files too), helm lint --strict (default and every example values file)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	go vet ./...
	staticcheck -tags e2e ./...
	helm lint --strict $(CHART)
	@for f in $(CHART)/ci/*-values.yaml; do [ -e "$$f" ] || continue; echo "helm lint --strict -f $$f"; helm lint --strict $(CHART) -f "$$f" >/dev/null || exit 1; done

test-unit: ## Go unit tests next to the code and Go tests under tests/go (chart, schema, webhook and its goldens)
	go test $(GOTESTFLAGS) ./...

test-helm: ## helm-unittest suites in tests/helm
	helm unittest -f '../../tests/helm/*_test.yaml' $(CHART)

test: tools lint test-unit test-helm ## everything that needs no cluster

images: ## build the images reproducibly and import them into the local cluster's containerd
	bash ci/images.sh

up: ## bring up the local single-node cluster (idempotent)
	bash ci/cluster/cluster.sh up

down: ## tear the local cluster down and restore the host
	bash ci/cluster/cluster.sh down

e2e: ## end-to-end tests on the local cluster (brings it up, builds images)
	bash ci/e2e.sh

demo: ## the whole product end to end: cluster, images, chart, a DAG workflow, results in ./demo-output
	bash ci/demo.sh

bench: ## benchmarks; writes docs/benchmarks/results.json and renders docs/benchmarks.md from it
	bash ci/bench.sh

bench-report: ## re-render docs/benchmarks.md from docs/benchmarks/results.json (ci/bench/benchmarks.md.tmpl), measuring nothing
	go run ./ci/bench -report

ci: test e2e ## what .ci/run runs: all tests, then the e2e on a real cluster

.PHONY: help tools schema golden lint test-unit test-helm test images up down e2e demo bench bench-report ci
