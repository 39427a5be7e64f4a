#!/usr/bin/env bash
# Failover benchmark: 3 masters (raft registry) on 127.0.0.1, N emulated agents (one real
# connection each, real wire protocol, `agora emulate-agents`) that re-register with TPA running
# tasks each. The leader is killed with SIGKILL; we measure kill -> a new leader (polling the
# survivors' /state every 20 ms) and kill -> every agent re-registered with the new leader.
# Each master serves N + 1000 connections (--max-connections; it raises its own soft fd limit)
# and the emulator needs one descriptor per agent, so the hard `ulimit -n` must exceed N + 1024.
# Usage: scripts/bench-failover.sh [N=1000] [TPA=10] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
TPA=${2:-10}
ROUNDS=${3:-3}
cargo build --release -q
MAXCONN=$((N + 1000))
ulimit -n "$(ulimit -Hn)" || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((N + 1024)) ] ||
  { echo "ulimit -Hn $(ulimit -Hn) is too low for $N agents"; exit 1; }
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/agora
DIR=$(mktemp -d /tmp/agora-bench-failover.XXXXXX)
declare -A MPID
EPID=""
cleanup() {
  for p in "${MPID[@]}" $EPID; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A ADDR HTTP
for i in 1 2 3; do ADDR[$i]=127.0.0.1:$(port); HTTP[$i]=127.0.0.1:$(port); done
PEERS="1=${ADDR[1]},2=${ADDR[2]},3=${ADDR[3]}"
MASTERS="${ADDR[1]},${ADDR[2]},${ADDR[3]}"
start_master() {
  "$BIN" master --id "$1" --peers "$PEERS" --listen "${ADDR[$1]}" --http "${HTTP[$1]}" \
    --work-dir "$DIR/m$1" --max-connections "$MAXCONN" >>"$DIR/m$1.log" 2>&1 & MPID[$1]=$!; disown
}
role() { curl -s --max-time 5 "http://${HTTP[$1]}/raft" 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["raft_role"])' 2>/dev/null || echo down; }
leader() { for i in 1 2 3; do [ "$(role "$i")" = leader ] && { echo "$i"; return; }; done; echo ""; }
for i in 1 2 3; do start_master "$i"; done
for _ in $(seq 200); do L=$(leader); [ -n "$L" ] && break; sleep 0.05; done
"$BIN" emulate-agents --master "$MASTERS" --agents "$N" --tasks-per-agent "$TPA" >"$DIR/emu.out" 2>"$DIR/emu.log" & EPID=$!; disown
for _ in $(seq 600); do grep -q all_registered "$DIR/emu.out" && break; sleep 0.1; done
grep -q all_registered "$DIR/emu.out" || { echo "agents did not register"; exit 1; }
echo "machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{print $2/1048576 " GiB"}'), $(uname -r)"
echo "cluster: 3 masters, $N emulated agents, $TPA tasks each on re-registration (release build)"
for r in $(seq 1 "$ROUNDS"); do
  sleep 3
  L=""; for _ in $(seq 100); do L=$(leader); [ -n "$L" ] && break; sleep 0.1; done
  [ -n "$L" ] || { echo "no leader before round $r"; exit 1; }
  before=$(grep -c all_reregistered "$DIR/emu.out" || true)
  declare -A LED; for i in 1 2 3; do LED[$i]=$(grep -c 'now the leader' "$DIR/m$i.log" || true); done
  T0=$(date +%s%3N)
  kill -9 "${MPID[$L]}"
  # The new leader's own log line says when it took over (polling /state would measure how
  # long a big /state takes to serve).
  NL=""
  while [ -z "$NL" ]; do
    for i in 1 2 3; do
      [ "$i" != "$L" ] && [ "$(grep -c 'now the leader' "$DIR/m$i.log" || true)" -gt "${LED[$i]:-0}" ] && NL=$i
    done
    [ -z "$NL" ] && sleep 0.02
    [ $(( $(date +%s%3N) - T0 )) -gt 60000 ] && { echo "no new leader"; exit 1; }
  done
  T1=$(grep 'now the leader' "$DIR/m$NL.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | awk '{print $1}' |
    python3 -c 'import sys,datetime; t=sys.stdin.read().strip().rstrip("Z"); d=datetime.datetime.fromisoformat(t[:26]).replace(tzinfo=datetime.timezone.utc); print(int(d.timestamp()*1000))')
  for _ in $(seq 1200); do
    [ "$(grep -c all_reregistered "$DIR/emu.out" || true)" -gt "$before" ] && break; sleep 0.05
  done
  T2=$(grep all_reregistered "$DIR/emu.out" | tail -1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["unix_ms"])')
  echo "round $r: killed master $L; new leader $NL after $((T1 - T0)) ms; all $N agents ($((N * TPA)) tasks) re-registered after $((T2 - T0)) ms"
  start_master "$L"   # back as a follower for the next round
done
