#!/usr/bin/env bash
# influxdb.sh: build a real InfluxDB server (influxd 1.8, which serves Flux
# at /api/v2/query when flux-enabled is set) for the influxdb metric
# provider's tests, into a cache directory outside the repository, and print
# the binary's path on stdout. Logs go to stderr.
#
#   influxd=$(scripts/influxdb.sh)   # then: SLUICE_INFLUXD=$influxd go test ...
#
# The binary is ${SLUICE_INFLUXDB_CACHE:-$HOME/.cache/sluice/influxdb}/<key>/influxd,
# where <key> hashes the version, this script and the Go version: it is built
# once. The source is InfluxDB's own module (github.com/influxdata/influxdb,
# its go.sum and the checksum database), from the Go module proxy; its Flux
# (github.com/influxdata/flux v0.65) is pure Go, so no Rust toolchain is
# needed. The cold build takes a few minutes (see docs/providers/influxdb.md).
# Safe to run concurrently: builders take a lock and build into a temporary
# directory renamed into place when complete.
set -euo pipefail

version=v1.8.3
GO=${GO:-go}
# InfluxDB is built as its own main module, whatever the caller's settings.
export GOWORK=off GOFLAGS= CGO_ENABLED=0

log() { printf 'influxdb: %s\n' "$*" >&2; }

if ! command -v "$GO" >/dev/null; then
  log "the Go toolchain ($GO) is not on PATH"
  exit 1
fi

key=$({ printf '%s\n' "$version"; cat "${BASH_SOURCE[0]}"; "$GO" env GOVERSION GOOS GOARCH; } | sha256sum | cut -c1-16)
cache=${SLUICE_INFLUXDB_CACHE:-${HOME:?set HOME or SLUICE_INFLUXDB_CACHE}/.cache/sluice/influxdb}
dir=$cache/$key
if [[ -f $dir/.complete ]]; then
  printf '%s\n' "$dir/influxd"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.$key.lock"
if command -v flock >/dev/null; then
  if ! flock -n 9; then
    log "another build of $key is running; waiting for it"
    flock 9
  fi
  rm -rf "$cache/.build-$key".*
fi
if [[ -f $dir/.complete ]]; then
  printf '%s\n' "$dir/influxd"
  exit 0
fi

tmp=$(mktemp -d "$cache/.build-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS
log "building influxd $version into $dir (the first build takes a few minutes)"
GOBIN=$tmp "$GO" install -trimpath -ldflags "-s -w -X main.version=${version#v}" \
  "github.com/influxdata/influxdb/cmd/influxd@$version"
"$tmp/influxd" version >&2
chmod -R a+rX,go-w "$tmp"
printf 'influxd %s\nbuilt %s with %s\n' "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$("$GO" env GOVERSION)" >"$tmp/VERSION"
touch "$tmp/.complete"
if ! mv -T "$tmp" "$dir" 2>/dev/null; then
  [[ -f $dir/.complete ]] || { log "could not move $tmp to $dir"; exit 1; }
fi
trap - EXIT
rm -rf "$tmp"
log "done in $((SECONDS - started))s"
printf '%s\n' "$dir/influxd"
