#!/usr/bin/env bash
# Launch benchmark: a master with 8 agents on 127.0.0.1 over TCP, then
# `agora run --instances N -- true`: throughput from submit to the last TASK_FINISHED, and
# accept -> TASK_RUNNING latency. Usage: scripts/bench-launch.sh [N=1000] [AGENTS=8]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
AGENTS=${2:-8}
cargo build --release -q
BIN=$PWD/target/release/agora
DIR=$(mktemp -d /tmp/agora-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # Executors run in their own process groups; the agents' sandboxes name them.
  pkill -9 -f "$BIN executor" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MP=$(port); MH=$(port)
"$BIN" master --listen 127.0.0.1:$MP --http 127.0.0.1:$MH --work-dir "$DIR/master" \
  --allocation-interval-ms 100 >"$DIR/master.log" 2>&1 & PIDS+=($!); disown
for i in $(seq 1 "$AGENTS"); do
  "$BIN" agent --master 127.0.0.1:$MP --listen 127.0.0.1:$(port) --http 127.0.0.1:$(port) \
    --work-dir "$DIR/agent$i" --resources 'cpus:16;mem:16384;disk:10000;ports:[31000-32000]' \
    >"$DIR/agent$i.log" 2>&1 & PIDS+=($!); disown
done
for _ in $(seq 100); do
  n=$("$BIN" agents --master 127.0.0.1:$MH --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
  [ "$n" = "$AGENTS" ] && break; sleep 0.1
done
echo "machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{print $2/1048576 " GiB"}'), $(uname -r)"
echo "cluster: 1 master + $AGENTS agents on 127.0.0.1 (release build)"
echo "== throughput: $N x true, one shared command executor per agent"
"$BIN" run --master 127.0.0.1:$MP --name bench --instances "$N" --cpus 0.1 --mem 8 --no-progress -- true
echo "== throughput: $N x true, one command executor process per task (Mesos's default)"
"$BIN" run --master 127.0.0.1:$MP --name bench-per-task --instances "$N" --cpus 0.1 --mem 8 --shared-executor false --no-progress -- true
echo "== launch latency without queueing: 200 x true, one task in flight at a time"
"$BIN" run --master 127.0.0.1:$MP --name bench-latency --instances 200 --cpus 0.1 --mem 8 --max-in-flight 1 --no-progress -- true
