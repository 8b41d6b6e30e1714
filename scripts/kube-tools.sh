#!/usr/bin/env bash
# kube-tools.sh: build the real-Kubernetes test tier's binaries and manifests
# (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, kwok
# Stage files, Gateway API / Istio / SMI CRDs, Argo Rollouts' plugin,
# controller and CRDs, Argo CD's Rollout health and action Lua scripts) into a
# cache directory outside the repository, and print that directory on stdout.
# Logs go to stderr.
#
#   dir=$(scripts/kube-tools.sh)   # then: SLUICE_KUBE_TOOLS=$dir go test ...
#
# The directory is ${SLUICE_KUBE_CACHE:-$HOME/.cache/sluice/kube-tools}/<key>,
# where <key> hashes the tools modules (test/kube/tools/*), the hand-written
# CRDs (test/kube/crds), this script and the Go version: it is rebuilt only
# when one of them changes. Everything comes from the Go module proxy through
# the go.sum files committed in test/kube/tools/*; the first build takes
# several minutes (kube-apiserver and friends), later runs print the cached
# directory at once. Safe to run concurrently: builders take a lock, build
# into a temporary directory and rename it into place when complete.
# See docs/testing-kube.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/test/kube/tools
crds=$root/test/kube/crds
GO=${GO:-go}
# The tools modules are independent of the main module and of any go.work.
export GOWORK=off
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

log() { printf 'kube-tools: %s\n' "$*" >&2; }

if ! command -v "$GO" >/dev/null; then
  log "the Go toolchain ($GO) is not on PATH"
  exit 1
fi

key_inputs() {
  # Sorted so the key does not depend on directory order.
  find "$tools" "$crds" -type f \( -name go.mod -o -name go.sum -o -name '*.go' -o -name '*.yaml' \) -print |
    LC_ALL=C sort | while read -r f; do
      printf '%s\n' "${f#"$root"/}"
      cat "$f"
    done
  cat "${BASH_SOURCE[0]}"
  "$GO" env GOVERSION GOOS GOARCH
}
key=$(key_inputs | sha256sum | cut -c1-16)

cache=${SLUICE_KUBE_CACHE:-${HOME:?set HOME or SLUICE_KUBE_CACHE}/.cache/sluice/kube-tools}
dir=$cache/$key
if [[ -f $dir/.complete ]]; then
  printf '%s\n' "$dir"
  exit 0
fi

mkdir -p "$cache"
# One builder at a time per key; others wait, then find the result.
exec 9>"$cache/.$key.lock"
if command -v flock >/dev/null; then
  if ! flock -n 9; then
    log "another build of $key is running; waiting for it"
    flock 9
  fi
  # Holding the lock, any other build directory of this key is a leftover
  # of a builder that was killed.
  rm -rf "$cache/.build-$key".*
fi
if [[ -f $dir/.complete ]]; then
  printf '%s\n' "$dir"
  exit 0
fi

tmp=$(mktemp -d "$cache/.build-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/kwok-stages" "$tmp/crds/gateway-api" "$tmp/crds/istio" "$tmp/crds/smi" \
  "$tmp/crds/argo-rollouts" "$tmp/argocd/Rollout"

started=$SECONDS
# modversion MODULE_DIR MODULE_PATH: the version MODULE_DIR's go.mod selects.
modversion() {
  (cd "$1" && "$GO" list -m -f '{{.Version}}' "$2")
}
kube_version=$(modversion "$tools/kubernetes" k8s.io/kubernetes)
kwok_version=$(modversion "$tools/kwok" sigs.k8s.io/kwok)
kwok_version=${kwok_version#v}
log "building into $dir (first build takes several minutes)"

# moddir MODULE_DIR MODULE_PATH: the module's source directory in the module
# cache, downloaded (and checked against go.sum) if needed.
moddir() {
  (cd "$1" && "$GO" mod download "$2" && "$GO" list -m -f '{{.Dir}}' "$2")
}

log "etcd"
(cd "$tools/etcd" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags '-s -w' -o "$tmp/bin/etcd" .)

log "kwok $kwok_version"
(cd "$tools/kwok" && CGO_ENABLED=0 "$GO" build -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$kwok_version -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${kube_version#v}" \
  -o "$tmp/bin/kwok" sigs.k8s.io/kwok/cmd/kwok)
kwok_src=$(moddir "$tools/kwok" sigs.k8s.io/kwok)
# Stages: nodes become Ready at once and keep a lease; pods become Ready at
# once, complete when their containers would, and go away when deleted.
for stage in node/fast node/heartbeat-with-lease pod/fast; do
  mkdir -p "$tmp/kwok-stages/$stage"
  for f in "$kwok_src/kustomize/stage/$stage"/*.yaml; do
    [[ $(basename "$f") == kustomization.yaml ]] && continue
    cp "$f" "$tmp/kwok-stages/$stage/"
  done
done

log "kube-apiserver, kube-controller-manager, kube-scheduler $kube_version (the slow part)"
major=${kube_version#v}; major=${major%%.*}
minor=${kube_version#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
(cd "$tools/kubernetes" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp/bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler)

log "CRDs"
gw_src=$(moddir "$tools/crds" sigs.k8s.io/gateway-api)
for f in "$gw_src"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
  # The standard channel also ships a ValidatingAdmissionPolicy; only CRDs here.
  grep -q '^kind: CustomResourceDefinition' "$f" && cp "$f" "$tmp/crds/gateway-api/"
done
istio_src=$(moddir "$tools/crds" istio.io/api)
# Istio ships all its CRDs in one file; keep the traffic-routing ones.
for crd in virtualservices destinationrules; do
  awk -v want="  name: $crd.networking.istio.io" '
    /^---/ { if (keep) printf "%s", doc; doc = ""; keep = 0; next }
    { doc = doc $0 "\n"; if ($0 == want) keep = 1 }
    END { if (keep) printf "%s", doc }
  ' "$istio_src/kubernetes/customresourcedefinitions.gen.yaml" >"$tmp/crds/istio/networking.istio.io_$crd.yaml"
  if ! grep -q '^kind: CustomResourceDefinition' "$tmp/crds/istio/networking.istio.io_$crd.yaml"; then
    log "no $crd CRD found in $istio_src/kubernetes/customresourcedefinitions.gen.yaml"
    exit 1
  fi
done
# The SMI SDK ships its CRDs only as apiextensions.k8s.io/v1beta1, which no
# current API server serves; ours are written for v1.
cp "$crds"/smi/*.yaml "$tmp/crds/smi/"

argo_version=$(modversion "$tools/argo" github.com/argoproj/argo-rollouts)
log "kubectl-argo-rollouts, rollouts-controller $argo_version"
argo_src=$(moddir "$tools/argo" github.com/argoproj/argo-rollouts)
# Argo Rollouts is built as its own main module, with its own go.mod (and its
# replace directives) and go.sum, from a writable copy: the module zip's
# server/static holds only a placeholder, and the plugin's dashboard command
# embeds that directory, so the build needs an index.html there. The page is
# never served in tests.
argo_build=$tmp/.argo-src
cp -R "$argo_src" "$argo_build"
chmod -R u+w "$argo_build"
printf '<!doctype html><title>Argo Rollouts dashboard (not built)</title>\n' >"$argo_build/server/static/index.html"
argo_ldflags="-s -w -X github.com/argoproj/argo-rollouts/utils/version.version=${argo_version#v}"
argo_ldflags+=" -X github.com/argoproj/argo-rollouts/utils/version.gitTag=$argo_version"
(cd "$argo_build" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "$argo_ldflags" -o "$tmp/bin/" \
  ./cmd/kubectl-argo-rollouts ./cmd/rollouts-controller)
rm -rf "$argo_build"
for f in "$argo_src"/manifests/crds/*.yaml; do
  [[ $(basename "$f") == kustomization.yaml ]] && continue
  cp "$f" "$tmp/crds/argo-rollouts/"
done

# Argo CD's built-in health assessment and resource actions for
# argoproj.io/Rollout, with the testdata they ship. Argo CD's module is only
# downloaded (verified by test/kube/tools/argo/go.sum), never built: it is
# pinned at the newest version whose go directive this Go accepts.
argocd_version=$(modversion "$tools/argo" github.com/argoproj/argo-cd/v3)
log "Argo CD $argocd_version Rollout health and actions"
argocd_src=$(moddir "$tools/argo" github.com/argoproj/argo-cd/v3)
cp -R "$argocd_src/resource_customizations/argoproj.io/Rollout/." "$tmp/argocd/Rollout/"
for f in health.lua health_test.yaml actions/discovery.lua actions/action_test.yaml; do
  [[ -f $tmp/argocd/Rollout/$f ]] || { log "no $f in $argocd_src/resource_customizations/argoproj.io/Rollout"; exit 1; }
done
chmod -R a+rX,go-w "$tmp"

etcd_version=$(modversion "$tools/etcd" go.etcd.io/etcd/server/v3)
gw_version=$(modversion "$tools/crds" sigs.k8s.io/gateway-api)
istio_version=$(modversion "$tools/crds" istio.io/api)
{
  printf 'kubernetes %s\netcd %s\nkwok v%s\n' "$kube_version" "$etcd_version" "$kwok_version"
  printf 'gateway-api %s\nistio.io/api %s\nsmi test/kube/crds/smi\n' "$gw_version" "$istio_version"
  printf 'argo-rollouts %s\nargo-cd %s\n' "$argo_version" "$argocd_version"
  printf 'built %s with %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$("$GO" env GOVERSION)"
} >"$tmp/VERSIONS"
touch "$tmp/.complete"
if ! mv -T "$tmp" "$dir" 2>/dev/null; then
  # Without flock another builder may have won the race; its result is as good.
  [[ -f $dir/.complete ]] || { log "could not move $tmp to $dir"; exit 1; }
fi
trap - EXIT
rm -rf "$tmp"
log "done in $((SECONDS - started))s"
printf '%s\n' "$dir"
