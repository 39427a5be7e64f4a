#!/usr/bin/env bash
# Container benchmark (Mesos 1.7's: 1,000 containers on one agent, ~30 s to launch, ~20 s to
# destroy): one master and ONE agent with the libcontainer containerizer on 127.0.0.1; then
# `agora run --instances N --shared-executor false -- sleep 3600`, i.e. N executors, each in
# its own container. Measures:
#   launch:  `agora run` start -> all N tasks TASK_RUNNING at the master (and the
#            accept -> TASK_RUNNING p50/p99 that `agora run` prints);
#   destroy: kill (SIGINT to `agora run`, which kills every task) -> the agent reports no
#            container left (containers killed, reaped, cgroups and directories removed).
# Also whether the master ever lost the agent (missed pings, disconnects).
# Needs root and cgroups. Usage: scripts/bench-containers.sh [N=1000] [MAX_PARALLEL_LAUNCHES=8]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
PAR=${2:-8}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -q
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/agora
DIR=$(mktemp -d /tmp/agora-bench-ct.XXXXXX)
ROOT="agora-bench$$"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # Whatever still runs in the benchmark's own cgroups (containers outlive a killed agent).
  for _ in 1 2 3; do
    for f in /sys/fs/cgroup/*/"$ROOT"/*/cgroup.procs; do
      [ -e "$f" ] || continue
      while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$f"
    done
    sleep 0.2
  done
  for d in /sys/fs/cgroup/*/"$ROOT"/* /sys/fs/cgroup/*/"$ROOT"; do
    [ -d "$d" ] && rmdir "$d" 2>/dev/null || true
  done
  umount -R "$DIR" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
json() { curl -sf "http://$1$2" 2>/dev/null || echo '{}'; }
MP=$(port); MH=$(port); AP=$(port); AH=$(port)
"$BIN" master --listen 127.0.0.1:$MP --http 127.0.0.1:$MH --work-dir "$DIR/master" \
  --allocation-interval-ms 100 >"$DIR/master.log" 2>&1 & PIDS+=($!); disown
# Resources big enough for N small tasks plus their executors.
"$BIN" agent --master 127.0.0.1:$MP --listen 127.0.0.1:$AP --http 127.0.0.1:$AH \
  --work-dir "$DIR/agent" --isolation libcontainer --cgroup-root "$ROOT" \
  --max-parallel-launches "$PAR" --disk-watch-interval-ms 0 \
  --resources "cpus:$((N / 2 + 16));mem:$((N * 64 + 4096));disk:100000;ports:[31000-32000]" \
  >"$DIR/agent.log" 2>&1 & APID=$!; PIDS+=($APID); disown
for _ in $(seq 100); do
  n=$(json 127.0.0.1:$MH /state | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("agents",[])))' 2>/dev/null || echo 0)
  [ "$n" = 1 ] && break; sleep 0.1
done
echo "machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{printf "%.0f GiB", $2/1048576}'), $(uname -r), cgroup $( [ -e /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1)"
echo "cluster: 1 master + 1 agent (libcontainer, --max-parallel-launches $PAR) on 127.0.0.1, release build"
running() {
  json 127.0.0.1:$MH /state | python3 -c '
import json,sys
s=json.load(sys.stdin)
fw=[f for f in s.get("frameworks",[]) if f["name"]=="bench-containers"]
a=s.get("agents",[{}])
print(sum(f["task_states"].get("TASK_RUNNING",0) for f in fw), a[0].get("missed_pings",0) if a else -1, s.get("counters",{}).get("agents_disconnected",0))' 2>/dev/null || echo "0 0 0"
}
containers() {
  json 127.0.0.1:$AH /monitor/statistics | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo -1
}
T0=$(now)
"$BIN" run --master 127.0.0.1:$MP --name bench-containers --instances "$N" --cpus 0.01 --mem 32 \
  --shared-executor false --no-progress -- sleep 3600 >"$DIR/run.out" 2>&1 & RUN=$!; PIDS+=($RUN)
MAX_MISSED=0; DISC=0
while :; do
  read -r r missed disc < <(running)
  [ "$missed" -gt "$MAX_MISSED" ] && MAX_MISSED=$missed
  DISC=$disc
  [ "$r" -ge "$N" ] && break
  if ! kill -0 $RUN 2>/dev/null || ! kill -0 $APID 2>/dev/null; then
    echo "FAILED: the job or the agent ended before all tasks ran ($r running)"; tail -5 "$DIR/run.out" "$DIR/agent.log"; exit 1
  fi
  if python3 -c "import sys; sys.exit(0 if $(now) - $T0 > 600 else 1)"; then
    echo "FAILED: only $r of $N running after 600 s"; exit 1
  fi
  sleep 0.25
done
T1=$(now)
RSS=$(awk '/VmRSS/{print $2}' /proc/$APID/status)
echo "launch: $N containers TASK_RUNNING in $(python3 -c "print(f'{$T1-$T0:.1f}')") s (Mesos 1.7: ~30 s); agent RSS $((RSS / 1024)) MiB; containers per the agent: $(containers)"
kill -INT $RUN
while [ "$(containers)" != 0 ]; do
  read -r r missed disc < <(running)
  [ "$missed" -gt "$MAX_MISSED" ] && MAX_MISSED=$missed
  DISC=$disc
  if python3 -c "import sys; sys.exit(0 if $(now) - $T1 > 600 else 1)"; then
    echo "FAILED: containers left after 600 s: $(containers)"; exit 1
  fi
  sleep 0.25
done
T2=$(now)
LEFT=$(find /sys/fs/cgroup/*/"$ROOT" -mindepth 1 -type d 2>/dev/null | wc -l)
echo "destroy: $N containers killed and destroyed in $(python3 -c "print(f'{$T2-$T1:.1f}')") s (Mesos 1.7: ~20 s); cgroup dirs left: $LEFT"
wait $RUN 2>/dev/null || true
grep -E "accept->TASK_RUNNING" "$DIR/run.out" | sed 's/^/agora run: /' || tail -3 "$DIR/run.out"
echo "master's view of the agent: most missed pings seen $MAX_MISSED, agent disconnects $DISC"
