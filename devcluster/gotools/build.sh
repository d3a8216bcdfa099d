#!/usr/bin/env bash
# Build (or reuse) the local control plane's binaries from the Go module proxy.
# Output: $KSA_CACHE/bin/<name>-<version> (+ a <name> symlink) for kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, kubectl, etcd, kwok, coredns, helm, vegeta, knative-{controller,webhook,autoscaler,activator,queue}
# (target knative-serving) and kserve-{manager,agent} + kserve-llmisvc from 0.16.0 (target kserve).
# `kserve@v0.16.0` / `knative-serving@v0.44.0` build another version than the pin; with no target, everything
# pinned is built, plus kserve at each of KSERVE_EXTRA_VERSIONS (the releases the cluster tests install).
# Every binary is keyed by its version, so a warm run only checks files and takes well under a second.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"
cache=${KSA_CACHE:-$HOME/.cache/kserve-ansible}
bindir="$cache/bin"
work="$cache/gobuild"
mkdir -p "$bindir" "$work"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOMODCACHE=${GOMODCACHE:-$cache/gomod} GOCACHE=${GOCACHE:-$cache/gocache}

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# have NAME VERSION: true when the binary for that version is already built.
have() { [ -x "$bindir/$1-$2" ]; }
link() { ln -sf "$1-$2" "$bindir/$1"; }
# pinlink NAME VERSION: link NAME to that version only when it is the target's pin ($pin).
pinlink() { [ "$2" != "$pin" ] || link "$1" "$2"; }

# wrapper DIR MODULE VERSION PKG...: a throwaway module that requires MODULE@VERSION and (through a
# tools.go file that is never compiled) imports the commands to build, so `go mod tidy` keeps the pin.
wrapper() {
  local dir=$1 mod=$2 ver=$3; shift 3
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'module ksa.local/build\n\ngo 1.24.0\n\nrequire %s %s\n' "$mod" "$ver" >"$dir/go.mod"
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'; for p in "$@"; do printf '\t_ "%s"\n' "$p"; done; printf ')\n'; } >"$dir/tools.go"
}

# godirective DIR MODULE VERSION: copy the upstream module's `go` directive into the wrapper.
godirective() {
  local gomod godir
  gomod=$(cd "$1" && go mod download -json "$2@$3" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  godir=$(sed -n 's/^go \(.*\)$/\1/p' "$gomod" | head -1)
  [ -z "$godir" ] || sed -i "s/^go .*/go $godir/" "$1/go.mod"
  printf '%s\n' "$gomod"
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION minor
  local all=1
  for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl; do have "$b" "$v" || all=0; done
  if [ $all = 1 ]; then for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl; do link "$b" "$v"; done; return; fi
  log "kubernetes $v: preparing wrapper module"
  local dir="$work/kubernetes-$v"
  wrapper "$dir" k8s.io/kubernetes "$v" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
  local gomod; gomod=$(godirective "$dir" k8s.io/kubernetes "$v")
  local staging="v0.${v#v1.}"
  # Every staging module the upstream go.mod replaces with ./staging/... is served as k8s.io/<name> v0.X.Y.
  grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/' "$gomod" | awk -v s="$staging" '{print "replace " $1 " => " $1 " " s}' >>"$dir/go.mod"
  minor=$(echo "$v" | cut -d. -f2)
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
-X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  (cd "$dir" && go mod tidy)
  for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl; do
    have "$b" "$v" && { link "$b" "$v"; continue; }
    log "kubernetes $v: building $b"
    (cd "$dir" && go build -trimpath -p 2 -ldflags "$ld" -o "$bindir/$b-$v.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$bindir/$b-$v.tmp" "$bindir/$b-$v"; link "$b" "$v"
  done
}

# simple NAME MODULE VERSION PACKAGE [LDFLAGS]
simple() {
  local name=$1 mod=$2 ver=$3 pkg=$4 ld=${5:-"-s -w"}
  if have "$name" "$ver"; then link "$name" "$ver"; return; fi
  log "$name $ver: building $pkg"
  local dir="$work/$name-$ver"
  wrapper "$dir" "$mod" "$ver" "$pkg"
  godirective "$dir" "$mod" "$ver" >/dev/null
  (cd "$dir" && go mod tidy)
  (cd "$dir" && go build -trimpath -p 2 -ldflags "$ld" -o "$bindir/$name-$ver.tmp" "$pkg")
  mv "$bindir/$name-$ver.tmp" "$bindir/$name-$ver"; link "$name" "$ver"
}

# replaces GOMOD DIR: copy the upstream go.mod's `replace` directives into the wrapper (they are ignored for a
# dependency). Only module => module version replaces can be copied; a local path one cannot be built this way.
replaces() {
  local lines
  lines=$(awk '/^replace \($/ {b=1; next} b && /^\)/ {b=0; next} b {print; next} /^replace / {sub(/^replace /, ""); print}' "$1")
  [ -n "$lines" ] || return 0
  if printf '%s\n' "$lines" | grep -qE '=>[[:space:]]*\.{1,2}/'; then
    echo "$1 replaces a module by a local path; cannot build it from the module proxy:" >&2
    printf '%s\n' "$lines" >&2; return 1
  fi
  printf '%s\n' "$lines" | sed 's/^[[:space:]]*/replace /' >>"$2/go.mod"
}

# gosum DIR MODULE VERSION: start the wrapper's go.sum from the upstream module's own go.sum. Its entries are
# as trustworthy as the module (whose own hash the checksum database verified), and the checksum database
# here does not answer for every pseudo-version upstream pins (knative.dev/caching@v0.0.0-20241022012359-...:
# "404 Not Found" on lookup although the proxy serves it, with the hash upstream's go.sum records).
gosum() {
  local src
  src=$(cd "$1" && go mod download -json "$2@$3" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ ! -f "$src/go.sum" ] || cp "$src/go.sum" "$1/go.sum"
  chmod u+w "$1/go.sum" 2>/dev/null || true
}

# moddir MODULE VERSION: the module's source directory in the module cache (downloaded when missing).
moddir() {
  local dir
  dir="$GOMODCACHE/$(printf '%s' "$1" | sed 's/[A-Z]/!\L&/g')@$2"
  [ -d "$dir" ] || dir=$(cd "$work" && go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  printf '%s\n' "$dir"
}

# commands PREFIX MODULE VERSION CMD...: several `MODULE/cmd/CMD` programs from one wrapper module
# (one dependency resolution, shared build cache), each to $bindir/PREFIX-CMD-VERSION. A `CMD?` is built
# only when that version of the module has it (KServe's cmd/llmisvc exists from 0.16.0 on). The unversioned
# PREFIX-CMD links point at the pinned version only ($pin), never at another version built on request.
commands() {
  local prefix=$1 mod=$2 ver=$3; shift 3
  local c all=1 pkgs=() cmds=() t src=""
  for c in "$@"; do
    if [ "${c%\?}" != "$c" ]; then
      c=${c%\?}
      if ! have "$prefix-$c" "$ver"; then
        [ -n "$src" ] || src=$(moddir "$mod" "$ver")
        [ -d "$src/cmd/$c" ] || continue
      fi
    fi
    cmds+=("$c")
  done
  set -- "${cmds[@]}"
  for c in "$@"; do have "$prefix-$c" "$ver" || all=0; pkgs+=("$mod/cmd/$c"); done
  if [ $all = 1 ]; then for c in "$@"; do pinlink "$prefix-$c" "$ver"; done; return; fi
  local dir="$work/$prefix-$ver"
  log "$prefix $ver: preparing wrapper module ($mod $ver)"
  wrapper "$dir" "$mod" "$ver" "${pkgs[@]}"
  local gomod; gomod=$(godirective "$dir" "$mod" "$ver")
  replaces "$gomod" "$dir"
  gosum "$dir" "$mod" "$ver"
  t=$(date +%s)
  (cd "$dir" && go mod tidy && go mod download)
  log "$prefix $ver: modules resolved and downloaded in $(( $(date +%s) - t ))s"
  for c in "$@"; do
    have "$prefix-$c" "$ver" && { pinlink "$prefix-$c" "$ver"; continue; }
    log "$prefix $ver: building $mod/cmd/$c"
    t=$(date +%s)
    (cd "$dir" && go build -trimpath -p 2 -ldflags "-s -w" -o "$bindir/$prefix-$c-$ver.tmp" "$mod/cmd/$c")
    mv "$bindir/$prefix-$c-$ver.tmp" "$bindir/$prefix-$c-$ver"; pinlink "$prefix-$c" "$ver"
    log "$prefix $ver: $prefix-$c built in $(( $(date +%s) - t ))s"
  done
}

extra=""
for v in ${KSERVE_EXTRA_VERSIONS:-}; do extra="$extra kserve@$v"; done
targets=${*:-"kubernetes etcd kwok coredns helm vegeta knative-serving kserve$extra"}
kserve_commands=(manager agent 'llmisvc?')
start=$(date +%s)
for t in $targets; do
  case $t in
    kubernetes) build_kubernetes ;;
    etcd) simple etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 ;;
    kwok) simple kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok ;;
    helm) simple helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
            "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" ;;
    coredns) simple coredns github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns ;;
    vegeta) simple vegeta github.com/tsenart/vegeta/v12 "$VEGETA_VERSION" github.com/tsenart/vegeta/v12 \
            "-s -w -X main.Version=$VEGETA_VERSION" ;;
    # The upstream controllers the pod runner starts for the pods the roles create (../programs.yaml).
    knative-serving|knative-serving@v*) pin=$KNATIVE_SERVING_MODULE_VERSION; v=$pin; [ "$t" = knative-serving ] || v=${t#*@}
            commands knative knative.dev/serving "$v" controller webhook autoscaler activator queue ;;
    kserve|kserve@v*) pin=$KSERVE_VERSION; v=$pin; [ "$t" = kserve ] || v=${t#*@}
            commands kserve github.com/kserve/kserve "$v" "${kserve_commands[@]}" ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done
log "done in $(( $(date +%s) - start ))s: $(find "$bindir" -maxdepth 1 -type l -printf "%f ")"
