#!/usr/bin/env bash
# make demo: the whole product end to end on a fresh machine.
#   local cluster → images → helm install → the DAG workflow of examples/dag → oras pull → ./demo-output
# With DEMO_USE_CURRENT_CONTEXT=1 it uses your current kube context instead of the local cluster
# (the images must then be available to that cluster's nodes).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
NS=${DEMO_NAMESPACE:-oras-demo}
RELEASE=oras-cache
t_start=$SECONDS
step() { printf '\n\033[1m==> [%4ss] %s\033[0m\n' "$((SECONDS - t_start))" "$*"; }

step "1/7 tools (helm, oras, …) — cached after the first run"
bash ci/install-tools.sh
if [[ -z "${DEMO_USE_CURRENT_CONTEXT:-}" ]]; then
  step "2/7 local single-node Kubernetes cluster (cold: builds Kubernetes from source, ~10 min on 2 cores)"
  bash ci/cluster/cluster.sh up
  export KUBECONFIG="$REPO_ROOT/.work/cluster/kubeconfig"
  step "3/7 images (webhook, sidecar, registry, test apps) built locally and imported"
  bash ci/images.sh
else
  step "2-3/7 using the current kube context: $(kubectl config current-context)"
fi

step "4/7 helm install $RELEASE charts/oras-cache -n $NS"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# Pod Security "restricted": the API server checks the chart's pods and every mutated pod.
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
helm upgrade --install "$RELEASE" charts/oras-cache -n "$NS" --wait --timeout 5m \
  -f charts/oras-cache/ci/e2e-local-values.yaml
kubectl -n "$NS" get pods -o wide

step "5/7 the DAG workflow: produce-greeting + produce-numbers → combine → report"
kubectl -n "$NS" delete job --ignore-not-found produce-greeting produce-numbers combine report >/dev/null
run_level() {
  local t=$SECONDS
  for f in "$@"; do kubectl -n "$NS" apply -f "examples/dag/$f"; done
  for f in "$@"; do
    local job; job=$(awk '/^  name:/{print $2; exit}' "examples/dag/$f")
    if ! kubectl -n "$NS" wait --for=condition=complete "job/$job" --timeout=5m >/dev/null; then
      echo "job $job did not complete:"; kubectl -n "$NS" describe "job/$job" | tail -20
      kubectl -n "$NS" logs "job/$job" --all-containers --prefix | tail -40; exit 1
    fi
    local pod; pod=$(kubectl -n "$NS" get pods -l "job-name=$job" -o jsonpath='{.items[0].metadata.name}')
    printf '   %-17s pushed %s\n' "$job" \
      "$(kubectl -n "$NS" get pod "$pod" -o jsonpath='{.status.containerStatuses[?(@.name=="oras-cache-push")].state.terminated.message}')"
  done
  printf '   level done in %ss\n' "$((SECONDS - t))"
}
run_level 01-produce-greeting.yaml 01-produce-numbers.yaml
run_level 02-combine.yaml
run_level 03-report.yaml

step "6/7 pull the result with the stock oras CLI through kubectl port-forward"
port=$((20000 + RANDOM % 20000))
kubectl -n "$NS" port-forward "svc/$RELEASE-registry" "$port:5000" --address 127.0.0.1 >/dev/null 2>&1 &
pf=$!
trap 'kill $pf 2>/dev/null || true' EXIT
user=$(kubectl -n "$NS" get secret "$RELEASE-auth" -o jsonpath='{.data.username}' | base64 -d)
pass=$(kubectl -n "$NS" get secret "$RELEASE-auth" -o jsonpath='{.data.password}' | base64 -d)
rm -rf demo-output && mkdir -p demo-output
# The port-forward needs a moment to listen: retry, then show the last attempt.
for i in $(seq 1 30); do
  if printf '%s' "$pass" | oras pull --plain-http -u "$user" --password-stdin "127.0.0.1:$port/dag/report:v1" -o demo-output >.work/demo-pull.log 2>&1; then break; fi
  sleep 1
done
cat .work/demo-pull.log
[[ -f demo-output/report.txt ]] || { echo "oras pull failed"; exit 1; }
echo "--- demo-output/report.txt"; cat demo-output/report.txt

step "7/7 done in $((SECONDS - t_start))s"
cat <<TXT
The cluster is still up. Explore it:
  export KUBECONFIG=$REPO_ROOT/.work/cluster/kubeconfig PATH=$REPO_ROOT/.work/bin:\$PATH
  kubectl -n $NS get jobs,pods
  kubectl -n $NS get pod -l job-name=combine -o yaml      # the injected init container, launcher and sidecar
  kubectl -n $NS port-forward svc/$RELEASE-registry 5000:5000 &
  oras repo ls --plain-http -u $user -p '<password>' 127.0.0.1:5000
Remove the release: helm uninstall $RELEASE -n $NS      Tear the cluster down: make down
TXT
