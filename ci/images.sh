#!/usr/bin/env bash
# Builds the project's images reproducibly (same inputs → same digests) as OCI image layouts
# under .work/images/<name>/ and, when the local cluster runs, imports them into its containerd
# (namespace k8s.io). Nothing is pulled: every image is a single layer of static binaries.
#
#   bash ci/images.sh            all images
#   bash ci/images.sh pause ...  only these (names below)
#
# name      reference                                            contents
# webhook   ghcr.io/converged-computing/oras-cache-webhook:0.1.0 ./webhook/cmd/oras-cache-webhook, user 65532
# sidecar   ghcr.io/converged-computing/oras-cache-sidecar:0.1.0 ./sidecar/cmd/oras-cache-sidecar, user 65532
# registry  docker.io/library/registry:3                         CNCF distribution $DISTRIBUTION_VERSION
# pause     registry.k8s.io/pause:3.10.1                         ci/testapps/pause (the pod sandbox)
# busybox   localhost/oras-cache-test/busybox:1                  Debian busybox-static, a shell
# noshell   localhost/oras-cache-test/noshell:1                  ci/testapps/noshell, ENTRYPOINT only, no shell
#
# Prints "reference digest" per image, and writes them to .work/images/digests.txt.
source "$(dirname "$0")/lib.sh"

OUT="$REPO_ROOT/.work/images"
BIN="$OUT/bin"
CTR_SOCK="$REPO_ROOT/.work/cluster/containerd/containerd.sock"
ALL=(webhook sidecar registry pause busybox noshell)
declare -A REF=(
  [webhook]=ghcr.io/converged-computing/oras-cache-webhook:0.1.0
  [sidecar]=ghcr.io/converged-computing/oras-cache-sidecar:0.1.0
  [registry]=docker.io/library/registry:3
  [pause]=registry.k8s.io/pause:3.10.1
  [busybox]=localhost/oras-cache-test/busybox:1
  [noshell]=localhost/oras-cache-test/noshell:1
)
NONROOT=65532:65532
PATH_ENV=PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin

mkdir -p "$OUT" "$BIN"
t_all=$SECONDS

# build_one runs in a command substitution, where `set -e` does not apply: these exit on failure.
gobuild() { # gobuild OUT PKG: a static, reproducible binary from the root module
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -buildid=" -o "$1" "$2" || exit 1
}

imagebuild() { "$BIN/imagebuild" "$@" || exit 1; }

need_main() { # need_main DIR: fail clearly when another team's main package is not there yet
  compgen -G "$REPO_ROOT/$1/*.go" >/dev/null || { echo "missing ./$1 (no main package yet)" >&2; exit 1; }
}

build_one() {
  local n=$1 layout="$OUT/$1" ref=${REF[$1]}
  case $n in
    webhook)
      need_main webhook/cmd/oras-cache-webhook
      gobuild "$BIN/oras-cache-webhook" ./webhook/cmd/oras-cache-webhook
      imagebuild -layout "$layout" -name "$ref" -user "$NONROOT" -env "$PATH_ENV" \
        -file "$BIN/oras-cache-webhook=/usr/local/bin/oras-cache-webhook" -dir /tmp:1777 \
        -entrypoint /usr/local/bin/oras-cache-webhook -expose 9443/tcp
      ;;
    sidecar)
      need_main sidecar/cmd/oras-cache-sidecar
      gobuild "$BIN/oras-cache-sidecar" ./sidecar/cmd/oras-cache-sidecar
      imagebuild -layout "$layout" -name "$ref" -user "$NONROOT" -env "$PATH_ENV" \
        -file "$BIN/oras-cache-sidecar=/usr/local/bin/oras-cache-sidecar" -dir /tmp:1777 \
        -entrypoint /usr/local/bin/oras-cache-sidecar
      ;;
    registry)
      cached_go_install registry "$DISTRIBUTION_VERSION" github.com/distribution/distribution/v3/cmd/registry >&2 || exit 1
      # the same default configuration as the upstream image: filesystem storage, :5000
      cat >"$BIN/registry-config.yml" <<'EOF'
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
      imagebuild -layout "$layout" -name "$ref" -env "$PATH_ENV" \
        -file "$(readlink -f "$TOOLS_BIN/registry")=/bin/registry" \
        -file "$BIN/registry-config.yml=/etc/distribution/config.yml:0644" \
        -dir /var/lib/registry -dir /tmp:1777 -expose 5000/tcp \
        -entrypoint registry -cmd serve -cmd /etc/distribution/config.yml
      ;;
    pause)
      gobuild "$BIN/pause" ./ci/testapps/pause
      imagebuild -layout "$layout" -name "$ref" -user 65535:65535 -file "$BIN/pause=/pause" -entrypoint /pause
      ;;
    busybox)
      local bb=/bin/busybox args=() a
      [[ -x $bb ]] || { echo "missing /bin/busybox (Debian busybox-static)" >&2; return 1; }
      for a in $("$bb" --list-full | sort -u); do
        [[ $a == bin/busybox ]] || args+=(-symlink "/$a=/bin/busybox")
      done
      imagebuild -layout "$layout" -name "$ref" -env "$PATH_ENV" \
        -file "$bb=/bin/busybox" -dir /tmp:1777 -dir /root:0700 "${args[@]}" -cmd sh
      ;;
    noshell)
      gobuild "$BIN/noshell" ./ci/testapps/noshell
      imagebuild -layout "$layout" -name "$ref" -file "$BIN/noshell=/noshell" -dir /data:1777 \
        -workdir /data -entrypoint /noshell
      ;;
    *) echo "unknown image $n (known: ${ALL[*]})" >&2; return 1 ;;
  esac
}

cluster_up() { [[ -S $CTR_SOCK ]] && ctr --address "$CTR_SOCK" version >/dev/null 2>&1; }

import_one() { # import_one NAME DIGEST: skip when containerd already has that digest
  local n=$1 digest=$2 ref=${REF[$1]} have
  have=$(ctr --address "$CTR_SOCK" -n k8s.io images ls "name==$ref" 2>/dev/null | awk 'NR>1{print $3}')
  if [[ $have == "$digest" ]]; then return 0; fi
  tar -C "$OUT/$n" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$OUT/$n.tar" .
  ctr --address "$CTR_SOCK" -n k8s.io images import --no-unpack=false "$OUT/$n.tar" >/dev/null
  rm -f "$OUT/$n.tar"
  log "imported $ref"
}

names=("$@")
((${#names[@]})) || names=("${ALL[@]}")
cd "$REPO_ROOT" || exit 1
t0=$SECONDS
go build -trimpath -o "$BIN/imagebuild" ./ci/imagebuild
up=0; cluster_up && up=1
failed=()
: >"$OUT/digests.new"
for n in "${names[@]}"; do
  t0=$SECONDS
  if ! err=$(build_one "$n" 2>&1 >/dev/null); then
    log "FAILED $n: $err"
    failed+=("$n")
    continue
  fi
  digest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$OUT/$n/index.json" | head -1 | cut -d'"' -f4)
  printf '%-56s %s\n' "${REF[$n]}" "$digest" | tee -a "$OUT/digests.new"
  ((up)) && import_one "$n" "$digest"
  log "$n: $((SECONDS - t0))s"
done
# keep the digests of images not built this time
if [[ -f $OUT/digests.txt ]]; then
  while read -r r d; do grep -q "^$r " "$OUT/digests.new" || printf '%-56s %s\n' "$r" "$d" >>"$OUT/digests.new"; done <"$OUT/digests.txt"
fi
sort -o "$OUT/digests.txt" "$OUT/digests.new"; rm -f "$OUT/digests.new"
if ((up)); then log "images imported into the cluster's containerd (k8s.io)"; else log "cluster not running: layouts only, under $OUT"; fi
log "images done in $((SECONDS - t_all))s"
if ((${#failed[@]})); then
  log "FAILED images: ${failed[*]}"
  exit 1
fi
