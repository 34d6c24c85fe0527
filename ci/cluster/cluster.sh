#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, offline, for the e2e tests and the demo.
#
#   bash ci/cluster/cluster.sh up          bring it up (idempotent: a running part is left alone)
#   bash ci/cluster/cluster.sh down        stop everything by recorded PID, restore host networking/sysctls
#   bash ci/cluster/cluster.sh status      what runs
#   bash ci/cluster/cluster.sh kubeconfig  print the admin kubeconfig path
#   bash ci/cluster/cluster.sh smoke       DNS, a ClusterIP Service, logs and a two-container Job
#                                          (needs the test images: bash ci/images.sh busybox noshell)
#
# Parts: etcd, containerd, runc and the CNI plugins from Debian; kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl built from the
# k8s.io/kubernetes module (ci/cluster/k8s/build.sh, cached); CoreDNS built from its module with a small
# plugin set (ci/cluster/coredns/), run as a host process bound to the bridge address and used by the
# kubelet as the cluster DNS, so pods resolve <svc>.<ns>.svc.cluster.local.
#
# Networking keeps everything on the machine: our own bridge $BRIDGE ($BRIDGE_IP/16) for the pods,
# the API server and the node IP on the bridge address, the Service CIDR routed into the bridge,
# and an nft table that drops any forwarding between the bridge and anything else (so neither pod
# nor Service traffic can leave through eth0), installed before anything else starts.
# All state lives in $REPO_ROOT/.work/cluster (git-ignored). Background and pitfalls:
# ci/cluster/README.md.
source "$(dirname "$0")/../lib.sh"

STATE="$REPO_ROOT/.work/cluster"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
PKI="$STATE/pki"
HOSTSAVE="$STATE/host"               # what the host looked like before the first `up`
BRIDGE=orascache0
BRIDGE_IP=10.88.0.1
POD_CIDR=10.88.0.0/16
SERVICE_CIDR=10.96.0.0/16
NODE_NAME=oras-cache-node
ETCD_PORT=23790
ETCD_PEER_PORT=23800
APISERVER="https://$BRIDGE_IP:6443"
NFT_GUARD=oras_cache_guard           # table inet $NFT_GUARD: the forward drop
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
CTR_SOCK="$STATE/containerd/containerd.sock"
KUBECONFIG_ADMIN="$STATE/kubeconfig"
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes kernel.keys.maxkeys kernel.keys.maxbytes
  net.netfilter.nf_conntrack_max)
# Fixed host paths that kubelet, containerd and libcni create whatever they are told.
HOST_PATHS=(/var/lib/kubelet /var/lib/cni /run/containerd /var/log/pods /var/log/containers /run/netns
  /etc/cni /opt/cni /var/lib/containerd /etc/kubernetes /run/kubernetes)
APT_PACKAGES=(etcd-server containerd runc containernetworking-plugins iptables nftables conntrack
  busybox-static iproute2 openssl curl procps util-linux kmod)

T_START=$SECONDS
T_STEP=$SECONDS
step() { # step NAME: prints the time the previous step took
  local now=$SECONDS
  log "== $* (previous step $((now - T_STEP))s, total $((now - T_START))s)"
  T_STEP=$now
}

# ---------------------------------------------------------------------------------------------
# processes

pid_of() { # pid_of NAME: the recorded PID when that same program still runs under it
  local f="$PIDS/$1.pid" pid exe want
  [[ -f $f ]] || return 1
  read -r pid want <"$f" || true
  [[ -n $pid && -d /proc/$pid ]] || return 1
  grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  # a PID reused by another program after a reboot is not ours (setsid execs the daemon)
  [[ -z $want || $exe == "$want" || $exe == */setsid ]] || return 1
  echo "$pid"
}

start_daemon() { # start_daemon NAME CMD...: start once in its own session; log under $LOGS
  local name=$1; shift
  if pid_of "$name" >/dev/null; then log "$name already running (pid $(pid_of "$name"))"; return 0; fi
  mkdir -p "$PIDS" "$LOGS"
  setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  echo "$! $(readlink -f "$(command -v "$1")")" >"$PIDS/$name.pid"
  log "started $name (pid $!)"
}

stop_pid() { # stop_pid NAME PID [timeout]: TERM, then KILL after the timeout
  local name=$1 pid=$2 timeout=${3:-15} i
  [[ -d /proc/$pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
  if [[ -d /proc/$pid ]]; then log "$name ($pid) did not stop in ${timeout}s: KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  for ((i = 0; i < 50; i++)); do [[ -d /proc/$pid ]] || return 0; sleep 0.1; done
}

stop_daemon() {
  local name=$1 pid
  if pid=$(pid_of "$name"); then stop_pid "$name" "$pid" "${2:-15}"; log "stopped $name ($pid)"; fi
  rm -f "$PIDS/$name.pid"
}

stop_all() { # stop_all NAME...: TERM them all at once, then wait for each
  local n pid pids=()
  for n in "$@"; do
    if pid=$(pid_of "$n"); then kill -TERM "$pid" 2>/dev/null || true; pids+=("$n:$pid"); fi
  done
  for n in "${pids[@]}"; do stop_pid "${n%%:*}" "${n#*:}" 15; log "stopped ${n%%:*} (${n#*:})"; rm -f "$PIDS/${n%%:*}.pid"; done
  for n in "$@"; do rm -f "$PIDS/$n.pid"; done
}

wait_for() { # wait_for WHAT TIMEOUT CMD...: retry CMD every 0.5 s
  local what=$1 timeout=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - t0 >= timeout)); then log "timed out after ${timeout}s waiting for $what"; return 1; fi
    sleep 0.5
  done
  log "$what ready after $((SECONDS - t0))s"
}

write_if_changed() { # write_if_changed FILE < content: keeps running daemons from seeing rewrites
  local f=$1 tmp; tmp=$(mktemp)
  cat >"$tmp"
  if [[ -f $f ]] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; else mkdir -p "$(dirname "$f")"; mv "$tmp" "$f"; chmod 0644 "$f"; fi
}

kc() { "$TOOLS_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# ---------------------------------------------------------------------------------------------
# host preparation and its exact undo

install_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

save_host_state() { # once, before the first change
  [[ -f $HOSTSAVE/done ]] && return 0
  mkdir -p "$HOSTSAVE"
  local s p
  : >"$HOSTSAVE/sysctls"
  for s in "${SYSCTLS[@]}"; do
    p=/proc/sys/${s//./\/}
    [[ -f $p ]] && echo "$s=$(<"$p")" >>"$HOSTSAVE/sysctls"
  done
  : >"$HOSTSAVE/created-paths"
  for p in "${HOST_PATHS[@]}"; do [[ -e $p ]] || echo "$p" >>"$HOSTSAVE/created-paths"; done
  nft list tables 2>/dev/null | sort >"$HOSTSAVE/nft-tables" || true
  touch "$HOSTSAVE/done"
}

setup_network() {
  modprobe br_netfilter 2>/dev/null || true
  modprobe overlay 2>/dev/null || true
  # The guard first: nothing may be forwarded between the bridge and the rest of the world.
  if ! nft list table inet "$NFT_GUARD" >/dev/null 2>&1; then
    nft -f - <<EOF
table inet $NFT_GUARD {
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "$BRIDGE" oifname != "$BRIDGE" counter drop
    oifname "$BRIDGE" iifname != "$BRIDGE" counter drop
  }
}
EOF
    log "nft table inet $NFT_GUARD: forwarding between $BRIDGE and anything else is dropped"
  fi
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  # (no `| grep -q` under pipefail: an early grep exit fails the pipeline with SIGPIPE)
  [[ $(ip -4 addr show dev "$BRIDGE") == *"inet $BRIDGE_IP/"* ]] || ip addr add "$BRIDGE_IP/16" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Service IPs that kube-proxy has not programmed go into the bridge, never the default route.
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE"
  sysctl -qw net.ipv4.ip_forward=1
  [[ -f /proc/sys/net/bridge/bridge-nf-call-iptables ]] && sysctl -qw net.bridge.bridge-nf-call-iptables=1
  [[ -f /proc/sys/net/bridge/bridge-nf-call-ip6tables ]] && sysctl -qw net.bridge.bridge-nf-call-ip6tables=1
  return 0
}

restore_host() {
  # Pod network namespaces, the bridge (with the Service route), the guard.
  local ns
  for ns in /run/netns/cni-*; do [[ -e $ns ]] || continue; ip netns delete "${ns##*/}" 2>/dev/null || { umount "$ns" 2>/dev/null; rm -f "$ns"; }; done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
  ip route del "$SERVICE_CIDR" 2>/dev/null || true
  # veths left by a container that was killed hard
  local v
  for v in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    [[ $(ip -d link show "$v" 2>/dev/null) == *"master $BRIDGE "* ]] && ip link delete "$v" 2>/dev/null || true
  done
  if [[ -f $HOSTSAVE/done ]]; then
    # nft tables that did not exist before: ours, kube-proxy's and the ones iptables-nft created.
    local t
    while read -r t; do
      [[ -n $t ]] || continue
      grep -qxF "$t" "$HOSTSAVE/nft-tables" || nft "delete $t" 2>/dev/null || true
    done < <(nft list tables 2>/dev/null | sort)
    # sysctls
    local kv
    while IFS= read -r kv; do
      [[ -n $kv ]] || continue
      [[ -f /proc/sys/$(tr . / <<<"${kv%%=*}") ]] && sysctl -qw "$kv" 2>/dev/null || true
    done <"$HOSTSAVE/sysctls"
    # fixed host paths
    local p
    while read -r p; do
      [[ -n $p && -e $p ]] || continue
      umount_under "$p"
      rm -rf "$p"
    done <"$HOSTSAVE/created-paths"
  else
    nft delete table inet "$NFT_GUARD" 2>/dev/null || true
  fi
  # containerd 1.6 always uses /run/containerd/{runc,s}
  rm -rf /run/containerd/s /run/containerd/runc 2>/dev/null || true
}

umount_under() { # unmount everything below a path, deepest first
  local d=$1
  awk -v d="$d" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

# ---------------------------------------------------------------------------------------------
# certificates and kubeconfigs

mkcert() { # mkcert NAME CN [O] [SANS] [server|client|both]
  local name=$1 cn=$2 o=${3:-} sans=${4:-} usage=${5:-client}
  [[ -f $PKI/$name.crt ]] && return 0
  local subj="/CN=$cn"; [[ -n $o ]] && subj="/O=$o$subj"
  local eku=clientAuth
  case $usage in server) eku=serverAuth ;; both) eku="serverAuth,clientAuth" ;; esac
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

kubeconfig_for() { # kubeconfig_for NAME CERTNAME: a kubeconfig with embedded client cert
  local f="$STATE/kubeconfigs/$1.kubeconfig" c=$2
  mkdir -p "$STATE/kubeconfigs"
  write_if_changed "$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: oras-cache-local
  cluster:
    server: $APISERVER
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$c.crt")
    client-key-data: $(base64 -w0 <"$PKI/$c.key")
contexts:
- name: oras-cache-local
  context: {cluster: oras-cache-local, user: $1}
current-context: oras-cache-local
EOF
  chmod 0600 "$f"
}

make_pki() {
  mkdir -p "$PKI"; chmod 0700 "$PKI"
  if [[ ! -f $PKI/ca.crt ]]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=oras-cache-local-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  [[ -f $PKI/sa.key ]] || { openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null; openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null; }
  local svc_ip=10.96.0.1
  mkcert apiserver kube-apiserver "" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE_NAME,IP:$BRIDGE_IP,IP:$svc_ip,IP:127.0.0.1" server
  mkcert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  mkcert admin oras-cache-admin system:masters
  mkcert controller-manager system:kube-controller-manager
  mkcert scheduler system:kube-scheduler
  mkcert kube-proxy system:kube-proxy system:node-proxier
  mkcert kubelet "system:node:$NODE_NAME" system:nodes
  mkcert kubelet-serving "system:node:$NODE_NAME" system:nodes "DNS:$NODE_NAME,IP:$BRIDGE_IP" server
  mkcert coredns oras-cache-coredns
  kubeconfig_for admin admin
  kubeconfig_for controller-manager controller-manager
  kubeconfig_for scheduler scheduler
  kubeconfig_for kube-proxy kube-proxy
  kubeconfig_for kubelet kubelet
  kubeconfig_for coredns coredns
  write_if_changed "$KUBECONFIG_ADMIN" <"$STATE/kubeconfigs/admin.kubeconfig"
  chmod 0600 "$KUBECONFIG_ADMIN"
}

# ---------------------------------------------------------------------------------------------
# the parts

start_etcd() {
  mkdir -p "$STATE/etcd"; chmod 0700 "$STATE/etcd"
  start_daemon etcd etcd --name oras-cache --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "oras-cache=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --logger zap --log-level warn --quota-backend-bytes 2147483648
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

start_containerd() {
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/cni/networks" "$STATE/cni/cache"
  write_if_changed "$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$CTR_SOCK"

[ttrpc]
  address = "$CTR_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (the pause sandbox wants -998)
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  write_if_changed "$STATE/cni/net.d/10-oras-cache.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "oras-cache-local",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/networks",
        "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.88.1.1", "rangeEnd": "10.88.255.254", "gateway": "$BRIDGE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
  start_daemon containerd containerd --config "$STATE/containerd/config.toml"
  wait_for containerd 60 ctr --address "$CTR_SOCK" version
}

apiserver_ready() { curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$APISERVER/readyz"; }

start_apiserver() {
  start_daemon kube-apiserver "$TOOLS_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$BRIDGE_IP" --advertise-address "$BRIDGE_IP" --secure-port 6443 \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --enable-priority-and-fairness=false \
    --cert-dir "$STATE/apiserver-certs"
  wait_for kube-apiserver 120 apiserver_ready
}

start_controllers() {
  start_daemon kube-controller-manager "$TOOLS_BIN/kube-controller-manager" \
    --kubeconfig "$STATE/kubeconfigs/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/kubeconfigs/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/kubeconfigs/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false --profiling=false \
    --cert-dir "$STATE/controller-manager-certs"
  start_daemon kube-scheduler "$TOOLS_BIN/kube-scheduler" \
    --kubeconfig "$STATE/kubeconfigs/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/kubeconfigs/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/kubeconfigs/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

start_coredns() {
  # RBAC for the CoreDNS user (the kubernetes plugin watches these).
  kc apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "oras-cache:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "oras-cache:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "oras-cache:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: oras-cache-coredns}
EOF
  # The cluster's zones are served by the kubernetes plugin; every other name gets NXDOMAIN at
  # once (no forwarding: DNS stays on the machine).
  write_if_changed "$STATE/coredns/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $BRIDGE_IP
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE/kubeconfigs/coredns.kubeconfig oras-cache-local
        pods insecure
        ttl 5
    }
    cache 5
    loadbalance
}
.:53 {
    bind $BRIDGE_IP
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
  # CoreDNS has no reload plugin here: restart it when its Corefile or binary changed.
  local stamp; stamp=$(cat "$STATE/coredns/Corefile" <(readlink -f "$TOOLS_BIN/coredns") | sha256sum)
  if [[ -f $STATE/coredns/stamp && $(<"$STATE/coredns/stamp") != "$stamp" ]] && pid_of coredns >/dev/null; then
    log "CoreDNS configuration or binary changed: restarting it"
    stop_daemon coredns
  fi
  echo "$stamp" >"$STATE/coredns/stamp"
  start_daemon coredns "$TOOLS_BIN/coredns" -conf "$STATE/coredns/Corefile"
  wait_for coredns 60 curl -fsS http://127.0.0.1:18181/ready
}

start_kubelet() {
  mkdir -p "$STATE/kubelet"
  write_if_changed "$STATE/resolv.conf" <<EOF
nameserver $BRIDGE_IP
EOF
  write_if_changed "$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$BRIDGE_IP]
resolvConf: $STATE/resolv.conf
# imported images cannot be pulled again: never garbage-collect them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
protectKernelDefaults: false
serializeImagePulls: false
maxPods: 110
podPidsLimit: -1
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 10s
shutdownGracePeriod: 0s
EOF
  start_daemon kubelet "$TOOLS_BIN/kubelet" --config "$STATE/kubelet-config.yaml" \
    --kubeconfig "$STATE/kubeconfigs/kubelet.kubeconfig" --root-dir "$STATE/kubelet" \
    --hostname-override "$NODE_NAME" --node-ip "$BRIDGE_IP" --v 1
}

start_kube_proxy() {
  write_if_changed "$STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kubeconfigs/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $BRIDGE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
mode: iptables
clusterCIDR: $POD_CIDR
nodePortAddresses: [$BRIDGE_IP/32]
iptables: {localhostNodePorts: false}
# leave the host's conntrack sysctls alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start_daemon kube-proxy "$TOOLS_BIN/kube-proxy" --config "$STATE/kube-proxy-config.yaml"
}

# Storage: no cloud and no provisioner here, so a pool of pre-made `local` PersistentVolumes
# (directories under $STATE/pv, mode 0777; kubelet applies fsGroup to local volumes) behind the
# default StorageClass `local`. A Released volume (its claim was deleted) is wiped and made
# Available again by a small loop (the pv-recycler daemon, every 5 s).
PV_POOL=${ORAS_CACHE_PV_POOL:-16}
setup_storage() {
  local i docs=""
  if [[ $(kc get pv -l oras-cache.local/pool=true -o name 2>/dev/null | wc -l) -ge $PV_POOL ]] && kc get storageclass local >/dev/null 2>&1; then
    return 0
  fi
  for ((i = 1; i <= PV_POOL; i++)); do
    mkdir -p "$STATE/pv/pv$i"; chmod 0777 "$STATE/pv/pv$i"
    docs+="---
apiVersion: v1
kind: PersistentVolume
metadata: {name: oras-cache-local-pv$i, labels: {oras-cache.local/pool: \"true\"}}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce, ReadWriteMany, ReadOnlyMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  volumeMode: Filesystem
  local: {path: $STATE/pv/pv$i}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$NODE_NAME]}]
"
  done
  kc apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
$docs
EOF
}

recycle_pvs() { # released volumes of the pool: wipe and make Available again
  local pv n
  for pv in $(kc get pv -l oras-cache.local/pool=true -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name}{"\n"}{end}'); do
    n=${pv#oras-cache-local-}
    find "$STATE/pv/$n" -mindepth 1 -delete 2>/dev/null || true
    kc patch pv "$pv" --type json -p '[{"op":"remove","path":"/spec/claimRef"}]' >/dev/null && log "recycled $pv"
  done
}

build_coredns() {
  local key dest
  key=$( { echo "$COREDNS_VERSION"; sha256sum <"$REPO_ROOT/ci/cluster/coredns/go.sum"; sha256sum <"$REPO_ROOT/ci/cluster/coredns/main.go"; go env GOVERSION; } | sha256sum | cut -c1-16)
  dest="$CACHE_HOME/coredns/$COREDNS_VERSION-$key"
  if [[ ! -x $dest/coredns ]]; then
    log "building CoreDNS $COREDNS_VERSION (minimal plugin set; cold ~1-2 min)"
    local t0=$SECONDS
    rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
    (cd "$REPO_ROOT/ci/cluster/coredns" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dest.tmp/coredns" .)
    rm -rf "$dest"; mv "$dest.tmp" "$dest"
    log "built CoreDNS in $((SECONDS - t0))s"
  fi
  ln -sfn "$dest/coredns" "$TOOLS_BIN/coredns"
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_up() {
  [[ $(id -u) == 0 ]] || { log "cluster.sh up needs root"; exit 1; }
  step "apt packages"
  install_packages
  step "Kubernetes $KUBERNETES_VERSION binaries (cached by version)"
  bash "$REPO_ROOT/ci/cluster/k8s/build.sh" >/dev/null
  step "CoreDNS $COREDNS_VERSION binary (cached)"
  build_coredns
  step "host network: guard, bridge $BRIDGE, Service route, sysctls"
  mkdir -p "$STATE" "$PIDS" "$LOGS"
  save_host_state
  setup_network
  step "certificates and kubeconfigs"
  make_pki
  step "etcd"
  start_etcd
  step "containerd"
  start_containerd
  step "pause image"
  if [[ -z $(ctr --address "$CTR_SOCK" -n k8s.io images ls -q "name==$PAUSE_IMAGE" 2>/dev/null) ]]; then
    bash "$REPO_ROOT/ci/images.sh" pause
  fi
  step "kube-apiserver"
  start_apiserver
  step "controller-manager, scheduler, CoreDNS, kubelet, kube-proxy"
  start_controllers
  start_coredns
  start_kubelet
  start_kube_proxy
  step "node Ready"
  wait_for "node $NODE_NAME registered" 90 kc get node "$NODE_NAME"
  kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=120s >/dev/null
  wait_for "default ServiceAccount" 60 kc -n default get serviceaccount default
  wait_for "kube-proxy" 60 curl -fsS http://127.0.0.1:10256/healthz
  step "storage: default StorageClass local, $PV_POOL local PersistentVolumes"
  setup_storage
  recycle_pvs
  start_daemon pv-recycler bash "$REPO_ROOT/ci/cluster/cluster.sh" pv-recycler
  step "done"
  log "cluster up in $((SECONDS - T_START))s — export KUBECONFIG=$KUBECONFIG_ADMIN ; kubectl: $TOOLS_BIN/kubectl"
}

cmd_down() {
  [[ -d $STATE ]] || { log "no cluster state at $STATE: nothing to do"; restore_host_if_dirty; return 0; }
  step "pods (the kubelet unmounts volumes and releases the pod network)"
  if pid_of kube-apiserver >/dev/null && pid_of kubelet >/dev/null && apiserver_ready >/dev/null 2>&1; then
    # Controllers first, orphaning their pods (so nothing is re-created while we wait), then
    # every pod with a short grace period; what is still there after 20 s is killed below.
    kc delete deployments,statefulsets,daemonsets,replicasets,jobs,cronjobs --all --all-namespaces \
      --cascade=orphan --wait=true --timeout=15s >/dev/null 2>&1 || true
    kc delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1 || true
    local t0=$SECONDS
    while ((SECONDS - t0 < 20)); do
      [[ -z $(kc get pods -A -o name 2>/dev/null) ]] && break
      sleep 0.5
    done
    log "pods gone after $((SECONDS - t0))s"
  fi
  step "stop kube-proxy and clean its rules"
  stop_daemon pv-recycler 2
  stop_daemon kube-proxy
  [[ -x $TOOLS_BIN/kube-proxy ]] && "$TOOLS_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  step "stop kubelet and the control plane"
  stop_daemon kubelet 20
  stop_all coredns kube-scheduler kube-controller-manager kube-apiserver
  stop_daemon etcd
  step "stop containers and containerd"
  if pid_of containerd >/dev/null; then
    local t
    for t in $(ctr --address "$CTR_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$CTR_SOCK" -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true
    done
    sleep 1
    for t in $(ctr --address "$CTR_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$CTR_SOCK" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true
    done
  fi
  stop_daemon containerd
  # containerd's shims outlive it: their PIDs are recorded in the state dir
  local f
  for f in "$STATE"/containerd/state/io.containerd.runtime.v2.task/*/*/init.pid "$STATE"/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
    [[ -f $f ]] || continue
    stop_pid "${f%/*}" "$(<"$f")" 5
  done
  step "unmount and restore host networking, sysctls, paths"
  umount_under "$STATE"
  restore_host
  # keep the logs of the last run for debugging, drop everything else
  rm -rf "$REPO_ROOT/.work/cluster-last-logs"
  [[ -d $LOGS ]] && mv "$LOGS" "$REPO_ROOT/.work/cluster-last-logs"
  rm -rf "$STATE"
  step "done"
  log "cluster down in $((SECONDS - T_START))s (logs of the last run: .work/cluster-last-logs)"
}

restore_host_if_dirty() { # a down without state: remove only what carries our names
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" || true
  nft delete table inet "$NFT_GUARD" 2>/dev/null || true
}

cmd_smoke() { # checks the running cluster with the test images (bash ci/images.sh busybox noshell first)
  local ns=oras-cache-smoke t0=$SECONDS
  apiserver_ready >/dev/null 2>&1 || { log "the cluster is not up"; return 1; }
  kc delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $ns}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: $ns}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: localhost/oras-cache-test/busybox:1
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www']
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $ns}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
  kc -n "$ns" rollout status deploy/web --timeout=90s >/dev/null
  wait_for "ServiceAccount in $ns" 30 kc -n "$ns" get serviceaccount default
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: $ns}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: localhost/oras-cache-test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c]
    args:
    - |
      nslookup web.$ns.svc.cluster.local | grep -q '^Address: 10\.96\.' && echo DNS=OK
      for i in 1 2 3 4 5 6 7 8 9 10; do
        out=\$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 web.$ns.svc.cluster.local 80) && break
        sleep 1
      done
      echo "\$out" | grep -q hello-from-web && echo SERVICE=OK
---
apiVersion: batch/v1
kind: Job
metadata: {name: share, namespace: $ns}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      volumes: [{name: shared, emptyDir: {}}]
      containers:
      - name: writer
        image: localhost/oras-cache-test/busybox:1
        imagePullPolicy: Never
        command: [sh, -c, 'echo data-123 > /shared/f']
        volumeMounts: [{name: shared, mountPath: /shared}]
      - name: reader
        image: localhost/oras-cache-test/noshell:1
        imagePullPolicy: Never
        args: [--sleep, 2s, --cat, /shared, --out, /shared/out.txt]
        volumeMounts: [{name: shared, mountPath: /shared}]
EOF
  local ok=1
  kc -n "$ns" wait --for=jsonpath='{.status.phase}'=Succeeded pod/client --timeout=90s >/dev/null || ok=0
  local logs; logs=$(kc -n "$ns" logs client 2>&1)
  grep -q DNS=OK <<<"$logs" && log "smoke: pod resolved web.$ns.svc.cluster.local through CoreDNS" || { ok=0; log "smoke: DNS FAILED: $logs"; }
  grep -q SERVICE=OK <<<"$logs" && log "smoke: pod reached the ClusterIP Service (kubectl logs works)" || { ok=0; log "smoke: Service FAILED"; }
  if kc -n "$ns" wait --for=condition=complete job/share --timeout=90s >/dev/null && [[ $(kc -n "$ns" logs job/share -c reader) == *data-123* ]]; then
    log "smoke: Job with two containers sharing an emptyDir completed (noshell image ran)"
  else ok=0; log "smoke: Job FAILED"; kc -n "$ns" describe job/share | tail -20 >&2; fi
  kc delete namespace "$ns" --wait=false >/dev/null
  ((ok)) || return 1
  log "smoke: all passed in $((SECONDS - t0))s"
}

cmd_status() {
  local n rc=0
  for n in etcd containerd kube-apiserver kube-controller-manager kube-scheduler coredns kubelet kube-proxy pv-recycler; do
    if p=$(pid_of "$n"); then printf '  %-24s running (pid %s)\n' "$n" "$p"; else printf '  %-24s stopped\n' "$n"; rc=1; fi
  done
  if ((rc == 0)) && apiserver_ready >/dev/null 2>&1; then
    kc get nodes -o wide 2>/dev/null || true
    echo "KUBECONFIG=$KUBECONFIG_ADMIN"
  fi
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  smoke) cmd_smoke ;;
  pv-recycler) # the loop behind the pv-recycler daemon; its sleep ends with it
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM INT
    while :; do sleep 5 & sleeper=$!; wait "$sleeper"; recycle_pvs 2>/dev/null || true; done ;;
  kubeconfig) echo "$KUBECONFIG_ADMIN" ;;
  *) echo "usage: $0 up|down|status|kubeconfig|smoke" >&2; exit 2 ;;
esac
