#!/usr/bin/env bash
# Builds the Kubernetes binaries of the local cluster from the k8s.io/kubernetes module through
# the wrapper module beside this script, into the cache (keyed by Kubernetes version, the wrapper's
# go.sum and the Go version), and links them into .work/bin. Prints the cache dir on stdout.
# A warm run (binaries cached) does nothing. Cold: ~8 min on 2 cores, with progress every 20 s.
source "$(dirname "$0")/../../lib.sh"
K8S_DIR="$REPO_ROOT/ci/cluster/k8s"
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

k8s_cache_dir() {
  local key
  key=$( { echo "$KUBERNETES_VERSION"; sha256sum <"$K8S_DIR/go.sum"; go env GOVERSION; } | sha256sum | cut -c1-16)
  echo "$CACHE_HOME/kubernetes/$KUBERNETES_VERSION-$key"
}

k8s_build() {
  local dest; dest=$(k8s_cache_dir)
  local ok=1 c
  for c in "${K8S_CMDS[@]}"; do [[ -x "$dest/$c" ]] || ok=0; done
  if ((ok == 0)); then
    local t0=$SECONDS v=${KUBERNETES_VERSION#v}
    local major=${v%%.*} minor=${v#*.}; minor=${minor%%.*}
    local ld="-s -w" p
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
      ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    local pkgs=() ; for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
    local logf="$dest.tmp/build.log"
    log "building Kubernetes $KUBERNETES_VERSION (${K8S_CMDS[*]}) — cold ~8 min on 2 cores; log: $logf"
    local total
    log "  resolving the package graph (on a fresh machine this first downloads ~85 MB of modules)"
    total=$(cd "$K8S_DIR" && GOWORK=off CGO_ENABLED=0 go list -deps "${pkgs[@]}" 2>/dev/null | wc -l) || total='?'
    ( cd "$K8S_DIR" && GOWORK=off CGO_ENABLED=0 exec go build -v -trimpath -ldflags "$ld" -o "$dest.tmp/" "${pkgs[@]}" ) >"$logf" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      sleep 20
      kill -0 "$pid" 2>/dev/null || break
      log "  kubernetes build: $((SECONDS - t0))s, $(grep -c . "$logf") of ~$total packages compiled or checked"
    done
    if ! wait "$pid"; then
      tail -30 "$logf" >&2
      log "Kubernetes build FAILED (full log: $logf)"
      return 1
    fi
    for c in "${K8S_CMDS[@]}"; do [[ -x "$dest.tmp/$c" ]] || { log "missing $c after build"; return 1; }; done
    rm -rf "$dest"; mv "$dest.tmp" "$dest"
    log "built Kubernetes $KUBERNETES_VERSION in $((SECONDS - t0))s → $dest"
  fi
  for c in "${K8S_CMDS[@]}"; do ln -sfn "$dest/$c" "$TOOLS_BIN/$c"; done
  echo "$dest"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then k8s_build; fi
