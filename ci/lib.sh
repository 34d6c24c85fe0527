# Shared settings for the ci/ scripts. Sourced, never run.
# Tool binaries are cached outside the clone, keyed by version, so a warm run installs nothing.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_HOME="${ORAS_CACHE_CI_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/oras-cache-ci}"
TOOLS_BIN="$REPO_ROOT/.work/bin"          # symlinks to the cached binaries, git-ignored
mkdir -p "$CACHE_HOME" "$TOOLS_BIN"
export PATH="$TOOLS_BIN:/usr/local/go/bin:$PATH"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

HELM_VERSION=v3.22.0
HELM_UNITTEST_VERSION=v1.1.2
ORAS_VERSION=v1.3.6
DISTRIBUTION_VERSION=v3.1.2
KUBECONFORM_VERSION=v0.8.0
STATICCHECK_VERSION=v0.8.2   # staticcheck 2026.2.2; it checks code for our Go 1.26 toolchain
KUBERNETES_VERSION=v1.34.4
COREDNS_VERSION=v1.15.0

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# cached_go_install NAME VERSION PKG [ldflags]: build PKG@VERSION once into the cache.
cached_go_install() {
  local name=$1 version=$2 pkg=$3 ldflags=${4:-}
  local dest="$CACHE_HOME/tools/$name-$version"
  if [[ ! -x "$dest/$name" ]]; then
    # One build per tool and version at a time: checkouts sharing the cache would otherwise
    # build the same tool into the same temporary directory at once.
    mkdir -p "$CACHE_HOME/tools"
    exec {lock}>"$dest.lock"
    flock "$lock"
    if [[ ! -x "$dest/$name" ]]; then
      log "building $name $version (cold: a few minutes)"
      local t0=$SECONDS
      rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
      CGO_ENABLED=0 GOBIN="$dest.tmp" go install -trimpath -ldflags "-s -w $ldflags" "$pkg@$version"
      rm -rf "$dest" && mv "$dest.tmp" "$dest"
      log "built $name in $((SECONDS - t0))s"
    fi
    exec {lock}>&-
  fi
  ln -sfn "$dest/$name" "$TOOLS_BIN/$name"
}
