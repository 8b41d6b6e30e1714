#!/usr/bin/env bash
# The narrated Sluice demo: v1 goes live; v2 (healthy) is canaried under
# load, analysed and promoted; v3 (answers 5xx half the time) is canaried,
# fails its analysis, is aborted, and the traffic returns to v2.
#
# Needs only the binaries `make build` puts in bin/. Run it with `make demo`,
# and watch it in the dashboard on http://127.0.0.1:3100: every step, the
# weights and the analysis' measurements show there as they happen.
# DEMO_LINGER (seconds, default 8) is how long the demo waits between acts
# so that each state can be seen in the dashboard; 0 runs it straight through.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=.sluice-demo
NATS=nats://127.0.0.1:4222
SLUICE=(bin/sluice --nats-url "$NATS")
DASHBOARD=http://127.0.0.1:3100
LINGER=${DEMO_LINGER:-8}
pids=()

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
# linger gives the dashboard's watcher time to see the state just reached.
linger() {
  if [ "$LINGER" -gt 0 ]; then
    note "(${LINGER}s to look at it in the dashboard: $DASHBOARD/)"
    sleep "$LINGER"
  fi
}

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

for port in 4222 9090 9091 8080 3100; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "make demo: port $port is in use (is 'make run' or another sluice dev running?)" >&2
    exit 1
  fi
done

printf '\n\033[1;7m   The dashboard: open %s to watch the demo   \033[0m\n' "$DASHBOARD"

say "Starting sluice dev (embedded NATS, the services, local platform, Prometheus, dashboard)"
rm -rf "$STATE"
bin/sluice dev --state-dir "$STATE" --log-level warn >"$STATE.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q "press Ctrl-C" "$STATE.log" 2>/dev/null && break
  sleep 0.2
done
grep "sluice dev:" "$STATE.log" | sed 's/^/   /'
if ! grep -q "dashboard and HTTP API" "$STATE.log"; then
  echo "make demo: sluice dev did not start the dashboard; see $STATE.log" >&2
  exit 1
fi
printf '\n\033[1;7m   open %s to watch   \033[0m\n' "$DASHBOARD"
note "the rollout list, then 'web': its steps, weights, analysis and events, live"
linger

manifest() { # version error-rate
  # The header route would flash by in the dashboard: hold it for a while.
  local pace=(-e "")
  if [ "$LINGER" -gt 0 ]; then
    pace=(-e "s/^\( *\)- setWeight: 20$/\1- pause: {duration: ${LINGER}s}\n&/")
  fi
  sed -e "s/{name: VERSION, value: v1}/{name: VERSION, value: $1}/" \
      -e "s/{name: ERROR_RATE, value: \"0\"}/{name: ERROR_RATE, value: \"$2\"}/" \
      "${pace[@]}" examples/canary-analysis.yaml
}

say "v1 goes live: the first revision is stable at once"
manifest v1 0 > "$STATE/v1.yaml"
"${SLUICE[@]}" apply -f examples/analysis-templates.yaml -f "$STATE/v1.yaml" --wait --timeout 2m | sed 's/^/   /'
linger

say "Load: 40 requests a second through the rollout's proxy on 127.0.0.1:8080"
bin/loadgen --url http://127.0.0.1:8080/ --rate 40 --report 3s >"$STATE/load.log" 2>&1 &
pids+=($!)
sleep 4
tail -n 1 "$STATE/load.log" | sed 's/^/   /'

say "v2 (healthy) is canaried: header route, 20% of traffic, then the success-rate analysis"
"${SLUICE[@]}" events web >"$STATE/events-v2.log" 2>&1 &
pids+=($!)
sleep 1
manifest v2 0 > "$STATE/v2.yaml"
"${SLUICE[@]}" apply -f "$STATE/v2.yaml" --wait --timeout 3m | sed 's/^/   /'
kill "${pids[-1]}" 2>/dev/null || true
sleep 6
note "what happened, from the status events:"
grep -av "^$" "$STATE/events-v2.log" | cut -c1-160 | sed 's/^/   /'
note "traffic during the canary, and after the promotion:"
tail -n 6 "$STATE/load.log" | sed 's/^/   /'
linger

say "v3 answers 500 to half its requests: canaried, analysed, aborted"
"${SLUICE[@]}" events web >"$STATE/events-v3.log" 2>&1 &
pids+=($!)
sleep 1
manifest v3 0.5 > "$STATE/v3.yaml"
if "${SLUICE[@]}" apply -f "$STATE/v3.yaml" --wait --timeout 3m | sed 's/^/   /'; then
  echo "make demo: v3 was not aborted" >&2
  exit 1
fi
kill "${pids[-1]}" 2>/dev/null || true
sleep 7
note "what happened, from the status events:"
grep -av "^$" "$STATE/events-v3.log" | cut -c1-200 | sed 's/^/   /'
note "traffic during the canary, and after the abort: back on v2 only"
tail -n 4 "$STATE/load.log" | sed 's/^/   /'

say "The rollout now"
"${SLUICE[@]}" get web | sed 's/^/   /'
note "its whole history, with every measurement, stays in the dashboard: $DASHBOARD/"

say "Done. State and logs are in $STATE/; 'make run' starts sluice dev for your own rollouts."
if [ -t 0 ]; then
  read -r -p "   press Enter to stop sluice dev and the dashboard " _ || true
fi
