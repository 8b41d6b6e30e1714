#!/usr/bin/env bash
# argo-crds.sh: write deploy/crds from Argo Rollouts' own CRD manifests, the
# release test/kube/tools/argo pins (go.mod and go.sum verify the module).
# Sluice runs on Argo's CRDs exactly as a cluster that ran Argo Rollouts
# has them, so the files are copied verbatim below a header naming their
# source and license; the module's LICENSE is copied beside them.
#
#   scripts/argo-crds.sh          # rewrite deploy/crds
#   scripts/argo-crds.sh --check  # exit 1 if deploy/crds differs
#
# test/deploy's TestCRDsAreArgosVerbatim compares deploy/crds with the CRDs
# scripts/kube-tools.sh collects from the same module, so bumping the pinned
# version without rerunning this script fails there. Logs go to stderr.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
export GOWORK=off
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
out=$root/deploy/crds
mode=write
[[ ${1:-} == --check ]] && mode=check

log() { printf 'argo-crds: %s\n' "$*" >&2; }

mod=github.com/argoproj/argo-rollouts
version=$(cd "$root/test/kube/tools/argo" && "$GO" list -m -f '{{.Version}}' "$mod")
src=$(cd "$root/test/kube/tools/argo" && "$GO" mod download "$mod" && "$GO" list -m -f '{{.Dir}}' "$mod")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
files=()
for f in "$src"/manifests/crds/*.yaml; do
  name=$(basename "$f")
  [[ $name == kustomization.yaml ]] && continue
  files+=("$name")
  {
    printf '# Argo Rollouts %s, manifests/crds/%s, copied verbatim by\n' "$version" "$name"
    printf '# scripts/argo-crds.sh from the Go module %s@%s.\n' "$mod" "$version"
    printf '# Copyright The Argo Authors. Licensed under the Apache License 2.0\n'
    printf '# (LICENSE.argo-rollouts beside this file). Do not edit: rerun the script.\n'
    cat "$f"
  } >"$tmp/$name"
done
cp "$src/LICENSE" "$tmp/LICENSE.argo-rollouts"
{
  cat <<'EOF'
# Argo Rollouts' own CRDs (argoproj.io/v1alpha1: Rollout, AnalysisRun,
# AnalysisTemplate, ClusterAnalysisTemplate, Experiment), verbatim from the
# release named in each file's header (scripts/argo-crds.sh writes them).
# Sluice runs on these schemas unchanged, so existing Rollout and
# AnalysisTemplate manifests apply as they are, Argo's own tools (the
# kubectl plugin, Argo CD) read what Sluice writes, and a cluster migrating
# from Argo Rollouts keeps the CRDs it has: skip this kustomization there.
#
# The schemas prune every status field Argo does not define; Sluice keeps
# nothing of its own in status. Apply with server-side apply (the CRDs are
# too large for kubectl's last-applied annotation):
#   kubectl apply --server-side -k deploy/crds
#
# These CRDs are Argo Rollouts' and cannot serve two controllers: migrate a
# cluster from Argo Rollouts to Sluice, don't run both on the same objects.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
EOF
  for name in "${files[@]}"; do
    printf '  - %s\n' "$name"
  done
} >"$tmp/kustomization.yaml"

if [[ $mode == check ]]; then
  if diff -r -q "$tmp" "$out" >/dev/null; then
    log "deploy/crds matches Argo Rollouts $version"
    exit 0
  fi
  diff -r -q "$tmp" "$out" >&2 || true
  log "deploy/crds differs from Argo Rollouts $version: run scripts/argo-crds.sh"
  exit 1
fi
rm -f "$out"/*.yaml "$out"/LICENSE.argo-rollouts
cp "$tmp"/* "$out/"
chmod 0644 "$out"/*
log "wrote deploy/crds from Argo Rollouts $version: ${files[*]}"
