#!/bin/bash
# A/B runs of the Rust client's sdk_bench variants against one zero-compute tinker-local,
# interleaved, each run a fresh process; prints each run's result line with the TCP
# connections opened system-wide (/proc/net/snmp ActiveOpens) and the server's CPU ticks.
# Build first: cargo build --release -p tinker-local -p tinker-client --bin tinker-local --example sdk_bench
# Usage: scripts/bench/rust_ab.sh REPS SCENARIO "PARAMS A" "PARAMS B" ...
#   e.g. scripts/bench/rust_ab.sh 3 burst "n=2000 legacy_pool=1" "n=2000" "n=2000 h2c=1"
# A variant starting with "bin=PATH" runs the sdk_bench binary at PATH (e.g. an old build
# copied aside) with the rest of its parameters, to compare code versions:
#   scripts/bench/rust_ab.sh 5 train "bin=/tmp/old/sdk_bench steps=400" "steps=400"
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
reps=$1
scenario=$2
shift 2
data=$(mktemp -d)
"$bin/tinker-local" serve --zero-compute --addr 127.0.0.1:0 --data-dir "$data" >"$data/out" 2>/dev/null &
server=$!
trap 'kill $server; wait $server 2>/dev/null; rm -rf "$data"' EXIT
while [ ! -s "$data/out" ]; do sleep 0.1; done
url=$(head -1 "$data/out" | sed 's/listening on //')
opens() { awk '/^Tcp:/ { n++; if (n == 2) print $6 }' /proc/net/snmp; }
ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }
"$bin/examples/sdk_bench" "$scenario" "$url" n=500 >/dev/null # warms the server
echo "load: $(cat /proc/loadavg)"
for _ in $(seq "$reps"); do
    for params in "$@"; do
        o0=$(opens)
        t0=$(ticks)
        exe=$bin/examples/sdk_bench
        args=$params
        if [[ $params == bin=* ]]; then
            exe=${params%% *}
            exe=${exe#bin=}
            args=${params#* }
            [[ $args == bin=* ]] && args=
        fi
        # shellcheck disable=SC2086 # the parameters are separate words
        line=$("$exe" "$scenario" "$url" $args | tail -1)
        echo "[$params] tcp_opened=$(($(opens) - o0)) server_ticks=$(($(ticks) - t0)) $line"
    done
done
echo "load: $(cat /proc/loadavg)"
