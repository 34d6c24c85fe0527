#!/usr/bin/env bash
# make e2e: the end-to-end suite on a real single-node cluster (brought up here if needed).
# In CI (CI=true) or with E2E_DOWN=1 the cluster is torn down afterwards; locally it stays up
# for the next run (`make down` removes it). E2E_RUN=regexp runs only the matching tests.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
t0=$SECONDS
bash ci/install-tools.sh
bash ci/cluster/cluster.sh up
if [[ "${CI:-}" == "true" || -n "${E2E_DOWN:-}" ]]; then
  trap 'log "tearing the cluster down"; bash ci/cluster/cluster.sh down' EXIT
fi
t1=$SECONDS
bash ci/images.sh
t2=$SECONDS
export KUBECONFIG="$REPO_ROOT/.work/cluster/kubeconfig"
log "running the e2e suite (go test -tags e2e ./tests/go/e2e)"
set +e
go test -tags e2e -count=1 -timeout 40m -v ${E2E_RUN:+-run "$E2E_RUN"} ./tests/go/e2e/ 2>&1 | tee "$REPO_ROOT/.work/e2e.log"
rc=${PIPESTATUS[0]}
set -e
log "e2e timings: tools+cluster $((t1 - t0))s, images $((t2 - t1))s, suite $((SECONDS - t2))s, total $((SECONDS - t0))s"
exit "$rc"
