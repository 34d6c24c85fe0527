#!/usr/bin/env bash
# `make bench`: the benchmarks of issue 6. Installs the pinned tools, builds ci/bench and runs it:
# data path vs the oras CLI (with tar/cp baselines), the webhook (handler benchmark, HTTPS load),
# and the per-step overhead on the local cluster when it is up. Writes docs/benchmarks/results.json,
# renders docs/benchmarks.md from it and prints the targets. Extra arguments go to the bench program
# (e.g. `-scale 0.01 -runs 2` for a quick development run, which writes to .work/bench instead;
# `go run ./ci/bench -h` lists them).
source "$(dirname "$0")/lib.sh"
T0=$(date +%s)
cd "$REPO_ROOT"

bash ci/install-tools.sh
# GNU time reports the peak RSS of each measured process (Go's own rusage of a child includes
# the parent's RSS, because Go starts children with vfork).
if ! /usr/bin/time -f %M true >/dev/null 2>&1; then
  log "apt-get install time"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi

mkdir -p .work/bench/bin
log "building ci/bench"
CGO_ENABLED=0 go build -o .work/bench/bin/bench ./ci/bench
log "load before the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
.work/bench/bin/bench -t0 "$T0" "$@"
log "make bench took $(( $(date +%s) - T0 ))s"
