#!/usr/bin/env bash
# kube-testenv.sh - build (cached) and optionally run a REAL Kubernetes control plane on
# 127.0.0.1 for talforge's integration tests: etcd + kube-apiserver. No kubelet, no
# scheduler, no controller-manager: Pods never run. Everything is built from the Go module
# proxy in generated wrapper modules that never touch talforge's own go.mod.
#
# Usage:
#   kube-testenv.sh build     # build kube-apiserver + etcd (+ kubectl if asked), cached per version
#   kube-testenv.sh assets    # print the assets directory (what TALFORGE_KUBE_ASSETS points at)
#   kube-testenv.sh env       # print: export TALFORGE_KUBE_ASSETS=... (and KUBECONFIG when started)
#   kube-testenv.sh start     # build if needed, start one shared control plane, wait for /readyz
#   kube-testenv.sh stop      # stop what `start` started (by recorded pids), remove the run dir
#   kube-testenv.sh status    # pids, RSS, /readyz
#
# Go tests do NOT need `start`: internal/testenv/kubeenv starts a fresh etcd + apiserver per
# test package (own ports, own throw-away PKI) from the assets directory. CI runs:
#   bash scripts/kube-testenv.sh build
#   TALFORGE_REQUIRE_KUBE=1 go test ./...
#
# Cost (2 cores, Go 1.26.8): cold build ~7 min (kube-apiserver ~5.5 min, etcd ~1.5 min),
# ~1 GB GOMODCACHE, ~3 GB GOCACHE, peak ~2.4 GB RSS. Cached: ~0 s (the stamp is checked).
#
# Knobs (environment):
#   KUBE_VERSION                  k8s.io/kubernetes release (default 1.37.2)
#   KUBE_TESTENV_ETCD_VERSION     go.etcd.io/etcd/server/v3 release (default 3.7.3). NOT named
#                                 ETCD_VERSION: etcd parses every ETCD_* variable as a flag.
#   TALFORGE_TESTENV_CACHE        cache root (default ~/.cache/talforge/testenv); binaries go to
#                                 <root>/<kube version>-etcd<etcd version>/, wrapper modules to <root>/src/
#   KUBE_TESTENV_BUILD_KUBECTL=1  also build kubectl (off by default; +45 s cold, no test needs it)
#   KUBE_TESTENV_DIR              run dir for `start` (default /tmp/talforge-kube-testenv)
#   KUBE_TESTENV_ETCD_PORT        etcd client port for `start` (default 23790; peer = +10)
#   KUBE_TESTENV_API_PORT         apiserver port for `start` (default 26443)
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
ETCD_VERSION=${KUBE_TESTENV_ETCD_VERSION:-3.7.3}
ROOT=${TALFORGE_TESTENV_CACHE:-$HOME/.cache/talforge/testenv}
# The assets directory is keyed by both versions so a version bump never reuses stale binaries.
# internal/testenv/kubeenv computes the same name from its own constants.
BIN=$ROOT/$KUBE_VERSION-etcd$ETCD_VERSION
SRC=$ROOT/src
BUILD_KUBECTL=${KUBE_TESTENV_BUILD_KUBECTL:-0}
RUN=${KUBE_TESTENV_DIR:-/tmp/talforge-kube-testenv}
ETCD_PORT=${KUBE_TESTENV_ETCD_PORT:-23790}
API_PORT=${KUBE_TESTENV_API_PORT:-26443}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
# The wrapper modules live outside any workspace; never let a caller's GOFLAGS=-mod=... or
# GOWORK leak into them.
export GOWORK=off
unset GOFLAGS

log() { echo "kube-testenv: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- build ----
# k8s.io/kubernetes is not meant to be used as a module: its go.mod requires every
# k8s.io/* staging module at v0.0.0 and replaces them with ./staging/... paths, which Go
# ignores in a dependency. The wrapper module replaces each with the published
# v0.<minor>.<patch> of the same release, generated from that release's own go.mod (so the
# list is exact: 33 modules for 1.37.2).
build_kube() {
  local want=(kube-apiserver) missing=() b
  [[ $BUILD_KUBECTL == 1 ]] && want+=(kubectl)
  mkdir -p "$BIN"
  for b in "${want[@]}"; do [[ -x $BIN/$b && -f $BIN/.$b-v$KUBE_VERSION ]] || missing+=("$b"); done
  if [[ ${#missing[@]} == 0 ]]; then log "kube v$KUBE_VERSION (${want[*]}) cached in $BIN"; return; fi

  local minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
  local staging="v0.$minor.${KUBE_VERSION##*.}"
  local dir="$SRC/kube-$KUBE_VERSION"
  mkdir -p "$dir"
  log "building ${missing[*]} v$KUBE_VERSION (staging modules $staging) in $dir"
  if [[ ! -f $dir/go.sum ]]; then
    local gomod   # only k8s.io/kubernetes' go.mod is needed here (go mod tidy fetches the rest)
    gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    [[ -f $gomod ]] || die "could not fetch go.mod of k8s.io/kubernetes@v$KUBE_VERSION"
    local n
    n=$(grep -c '^[[:space:]]*k8s\.io/[^ ]* => \./staging/' "$gomod" || true)
    [[ $n -gt 0 ]] || die "no staging replace lines in $gomod"
    {
      echo "module talforge-testenv/kube"
      echo
      echo "go $(sed -n 's/^go //p' "$gomod")"
      echo
      echo "require k8s.io/kubernetes v$KUBE_VERSION"
      echo
      # kubectl is listed even when not built so that a later KUBE_TESTENV_BUILD_KUBECTL=1
      # finds its go.sum entries (a tool missing here fails with "missing go.sum entry").
      echo "tool ("
      echo "	k8s.io/kubernetes/cmd/kube-apiserver"
      echo "	k8s.io/kubernetes/cmd/kubectl"
      echo ")"
      echo
      echo "replace ("
      # "k8s.io/x => ./staging/src/k8s.io/x"  becomes  "k8s.io/x => k8s.io/x v0.M.P"
      sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#	\1 => \1 '"$staging"'#p' "$gomod"
      echo ")"
    } > "$dir/go.mod.tmp"
    mv "$dir/go.mod.tmp" "$dir/go.mod"
    log "pinned $n staging modules at $staging"
    (cd "$dir" && go mod tidy)
  fi
  # Version stamping matters: an unstamped build reports v0.0.0-master on /version and Helm
  # then refuses charts with a kubeVersion constraint (Longhorn's is ">=1.25.0-0" and up).
  local ldf="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X $p.gitVersion=v$KUBE_VERSION -X $p.gitMajor=${KUBE_VERSION%%.*} -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  for b in "${missing[@]}"; do
    (cd "$dir" && go build -trimpath -ldflags "$ldf" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$BIN/$b.tmp" "$BIN/$b"
    touch "$BIN/.$b-v$KUBE_VERSION"
  done
}

# etcd: go.etcd.io/etcd/server/v3's root package is the etcd main.
build_etcd() {
  mkdir -p "$BIN"
  if [[ -x $BIN/etcd && -f $BIN/.etcd-v$ETCD_VERSION ]]; then log "etcd v$ETCD_VERSION cached in $BIN"; return; fi
  local dir="$SRC/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  log "building etcd v$ETCD_VERSION in $dir"
  if [[ ! -f $dir/go.sum ]]; then
    printf 'module talforge-testenv/etcd\n\ngo 1.26.0\n' > "$dir/go.mod"
    (cd "$dir" && go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION")
  fi
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
  touch "$BIN/.etcd-v$ETCD_VERSION"
}

check_version() {
  local got
  got=$("$BIN/kube-apiserver" --version 2>/dev/null || true)
  [[ $got == "Kubernetes v$KUBE_VERSION" ]] || die "kube-apiserver reports '$got', want 'Kubernetes v$KUBE_VERSION' (unstamped build?)"
}

cmd_build() {
  local t0=$SECONDS
  build_kube; build_etcd; check_version
  log "assets ready in $BIN ($((SECONDS - t0)) s)"
}

# ---------------------------------------------------------------- start ----
# A shared control plane for manual runs of the built CLI. The Go tests start their own.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { [[ -f $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
readyz() {
  curl -sf --max-time 2 --cacert "$RUN/pki/ca.crt" --cert "$RUN/pki/admin.crt" --key "$RUN/pki/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

gen_pki() {
  local d=$RUN/pki; mkdir -p "$d"
  (
    cd "$d"
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
      -keyout ca.key -out ca.crt -subj "/CN=talforge-testenv-ca" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout apiserver.key \
      -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout admin.key \
      -out admin.csr -subj "/O=system:masters/CN=talforge-testenv-admin" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  cat > "$RUN/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: talforge-testenv
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 < "$d/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 < "$d/admin.crt")
    client-key-data: $(base64 -w0 < "$d/admin.key")
contexts:
- name: talforge-testenv
  context: {cluster: talforge-testenv, user: admin, namespace: default}
current-context: talforge-testenv
EOF
  chmod 600 "$RUN/kubeconfig"
}

cmd_start() {
  alive apiserver && { log "already running (KUBECONFIG=$RUN/kubeconfig)"; return; }
  command -v openssl >/dev/null || die "openssl is needed for 'start' (apt-get install -y openssl); Go tests do not need it"
  command -v curl >/dev/null || die "curl is needed for 'start' (apt-get install -y curl)"
  cmd_build
  local p
  for p in "$ETCD_PORT" $((ETCD_PORT + 10)) "$API_PORT"; do
    port_busy "$p" && die "port $p on 127.0.0.1 is in use (set KUBE_TESTENV_ETCD_PORT / KUBE_TESTENV_API_PORT)"
  done
  rm -rf "$RUN"; mkdir -p "$RUN"
  trap 'log "start failed"; cmd_stop' ERR
  gen_pki
  local data=$RUN/etcd-data
  if [[ -d /dev/shm && -w /dev/shm ]]; then
    data=$(mktemp -d /dev/shm/talforge-etcd.XXXXXX); echo "$data" > "$RUN/etcd-data.path"
  fi
  "$BIN/etcd" --name talforge-testenv --data-dir "$data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-cluster "talforge-testenv=http://127.0.0.1:$((ETCD_PORT + 10))" \
    --unsafe-no-fsync > "$RUN/etcd.log" 2>&1 &
  echo $! > "$RUN/etcd.pid"
  local d=$RUN/pki
  "$BIN/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --endpoint-reconciler-type=none \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --cert-dir="$RUN/apiserver-certs" \
    --tls-cert-file="$d/apiserver.crt" --tls-private-key-file="$d/apiserver.key" \
    --client-ca-file="$d/ca.crt" \
    --authorization-mode=RBAC --anonymous-auth=false \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$d/sa.pub" --service-account-signing-key-file="$d/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true --profiling=false \
    > "$RUN/apiserver.log" 2>&1 &
  echo $! > "$RUN/apiserver.pid"
  local i
  for i in $(seq 1 600); do
    readyz && { trap - ERR; log "ready: KUBECONFIG=$RUN/kubeconfig"; return; }
    alive apiserver || { tail -30 "$RUN/apiserver.log" >&2; cmd_stop; die "kube-apiserver exited"; }
    alive etcd || { tail -30 "$RUN/etcd.log" >&2; cmd_stop; die "etcd exited"; }
    sleep 0.2
  done
  tail -30 "$RUN/apiserver.log" >&2; cmd_stop; die "kube-apiserver not ready after 120 s"
}

stop_pid() { # only the pid that `start` recorded; SIGTERM, SIGKILL after 10 s
  local f=$RUN/$1.pid pid; [[ -f $f ]] || return 0; pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$f"
}
cmd_stop() {
  [[ -d $RUN ]] || return 0
  stop_pid apiserver; stop_pid etcd
  [[ -f $RUN/etcd-data.path ]] && rm -rf "$(cat "$RUN/etcd-data.path")"
  rm -rf "$RUN"; log "stopped"
}

cmd_status() {
  local n pid
  for n in etcd apiserver; do
    [[ -f $RUN/$n.pid ]] || continue
    pid=$(cat "$RUN/$n.pid")
    if kill -0 "$pid" 2>/dev/null; then echo "$n pid $pid RSS $(awk '/VmRSS/{print $2, $3}' "/proc/$pid/status")"
    else echo "$n not running"; fi
  done
  if readyz; then echo "readyz ok"; else echo "readyz failing"; return 1; fi
}

cmd_env() {
  echo "export TALFORGE_KUBE_ASSETS=$BIN"
  [[ -f $RUN/kubeconfig ]] && echo "export KUBECONFIG=$RUN/kubeconfig"
  return 0
}

case "${1:-}" in
  build) cmd_build ;;
  assets) echo "$BIN" ;;
  env) cmd_env ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
