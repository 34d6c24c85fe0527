#!/usr/bin/env bash
# Installs every tool the tests need, pinned, from Debian apt and the Go module proxy only.
# Idempotent: binaries are cached by version under $CACHE_HOME; a warm run installs nothing.
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(apache2-utils jq)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# helm: a plain `go install` reports v3.22 and a default Kubernetes v1.20, which breaks
# `kubeVersion: >=1.30` charts; the ldflags give it its real version.
cached_go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
   -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34 \
   -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34"
cached_go_install oras "$ORAS_VERSION" oras.land/oras/cmd/oras
cached_go_install registry "$DISTRIBUTION_VERSION" github.com/distribution/distribution/v3/cmd/registry
cached_go_install kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform
cached_go_install staticcheck "$STATICCHECK_VERSION" honnef.co/go/tools/cmd/staticcheck

# helm-unittest: its go.mod has a replace directive (go install refuses it) and its plugin.yaml
# downloads a release binary; build it from the module source and write a hook-less plugin.yaml.
hu="$CACHE_HOME/tools/helm-unittest-$HELM_UNITTEST_VERSION"
exec {hu_lock}>"$hu.lock"; flock "$hu_lock"   # one build at a time across checkouts
if [[ ! -x "$hu/helm-unittest" ]]; then
  log "building helm-unittest $HELM_UNITTEST_VERSION"
  dir=$(go mod download -json "github.com/helm-unittest/helm-unittest@$HELM_UNITTEST_VERSION" | jq -r .Dir)
  src=$(mktemp -d); cp -r "$dir/." "$src"; chmod -R u+w "$src"
  rm -rf "$hu.tmp"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$hu.tmp/helm-unittest" ./cmd/helm-unittest)
  rm -rf "$src" "$hu"; mv "$hu.tmp" "$hu"
fi
exec {hu_lock}>&-
export HELM_PLUGINS="$REPO_ROOT/.work/helm-plugins"
mkdir -p "$HELM_PLUGINS/unittest"
cat > "$HELM_PLUGINS/unittest/plugin.yaml" <<YAML
name: "unittest"
version: "${HELM_UNITTEST_VERSION#v}"
usage: "unit test for helm charts"
description: "helm-unittest built from its Go module (no install hook)"
command: "$hu/helm-unittest"
YAML
log "tools ready in $TOOLS_BIN"
