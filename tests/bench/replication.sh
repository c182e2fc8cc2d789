#!/usr/bin/env bash
# Replication benchmark (issue 5, DESIGN.md §8): one seeder, N leechers on loopback, for
# torronto, rqbit and aria2, timed in the same run; plus Query latency on a node holding
# 1,000 files and the hashing cost per GiB.
#
#   tests/bench/replication.sh [--size MiB] [--nodes N] [--rounds N] [--only torronto|private|rqbit|aria2|floor|bt-seed] [--private] [--keep] [--perf DIR]
#
# `--perf DIR` records each torronto node with `perf record --call-graph dwarf` during the timed window only
# (DIR/<tool>-r<round>-<role>.data; read with `perf report -i FILE --sort comm,sym`), so a
# profile shows the transfer and not the insert, the Query rounds or other processes.
#
# `--only bt-seed` (issue 15) is a benchmark of its own: a torronto node seeds its BitTorrent
# export (`torronto torrent --tracker`) to N aria2c leechers, beside aria2c seeding that same
# .torrent to the same leechers (same flags, trading with each other as they do by default);
# the clock runs from the leechers' start until every one has run its completion hook.
# aria2c's own defaults stand (no upload limit, 55 peers, 16 MiB disk cache); the leechers
# keep seeding (--seed-ratio=0.0) so they trade pieces until the last is done. Both seeders
# hash the file before the clock: the node when exporting, aria2c with --check-integrity.
# No rqbit leechers yet (rqbit was not installed where this was written to try them).
# Installs what it needs (rqbit via `cargo install`, Debian's aria2 and transmission-cli via
# apt-get), skipping what is already there, and builds torronto in release mode.
# Every process listens on 127.0.0.1 on ports picked here; DHT, LPD, UPnP and the like are
# off; the trackers are a tiny HTTP tracker started by this script. Everything it starts is
# killed on exit (also on Ctrl-C or failure) and its temporary folder removed (unless --keep).
#
# What is timed:
#   torronto  the seeder node has joined and holds the inserted file (the insert, which copies
#             and hashes it, is timed separately as the hashing cost); the leecher nodes run,
#             not joined. The clock starts just before `torronto join` is sent to the leechers
#             (one after another) and stops when DIR/<name> exists with the full size on every
#             leecher (a node renames the file there only once every chunk is verified).
#   rqbit,    the seeder has checked its copy and announced itself complete to the tracker.
#   aria2     The clock starts just before the leecher processes are started and stops when
#             every leecher reports the torrent complete (rqbit: its HTTP API says finished;
#             aria2: its --on-bt-download-complete hook ran). Leechers keep seeding to each
#             other until all are done.
#   floor     no tool: the file sent with sendfile over loopback to N receiver processes that
#             each receive all of it, check the SHA-256 of every 64 KiB chunk against a list
#             made before the clock, and write it (tests/bench/floor, native, timing itself
#             from spawning the receivers until the last exits). The work every tool here must
#             do at least, with no protocol around it: a bound on what any tool can reach. A tool
#             faster than the floor in the same round is reported as BROKEN FLOOR.
# Before the rounds the script measures per-byte costs on this machine (SHA-256 per 64 KiB on
# one core and loopback TCP, both by the floor program; page-cache writes by dd) and prints
# the floor they predict beside the floor measured.
# Every leecher's copy is checked (size and SHA-256) after the clock stops.
# Peak RSS is each process's VmHWM from /proc at the end of its run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
helper="$here/bench.py"

size_mib=1024
leechers=3
rounds=3
only=""
keep=false
private=false
perf_dir=""
usage() { sed -n '5,6p' "$0" | sed 's/^# *//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size_mib=${2:?}; shift 2 ;;
    --size=*) size_mib=${1#*=}; shift ;;
    --nodes) leechers=${2:?}; shift 2 ;;
    --nodes=*) leechers=${1#*=}; shift ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --rounds=*) rounds=${1#*=}; shift ;;
    --only) only=${2:?}; shift 2 ;;
    --only=*) only=${1#*=}; shift ;;
    --keep) keep=true; shift ;;
    --perf) perf_dir=${2:?}; shift 2 ;;
    --perf=*) perf_dir=${1#*=}; shift ;;
    --private) private=true; shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
case "$only" in ""|torronto|private|rqbit|aria2|floor|bt-seed) ;; *) echo "--only takes torronto, private, rqbit, aria2, floor or bt-seed" >&2; exit 2 ;; esac
[ "$only" = private ] && private=true
if [ -n "$perf_dir" ]; then
  command -v perf >/dev/null || { echo "--perf needs perf (Debian: linux-perf)" >&2; exit 2; }
  mkdir -p "$perf_dir" && perf_dir=$(cd "$perf_dir" && pwd)
fi
[[ "$size_mib" =~ ^[0-9]+$ && "$size_mib" -gt 0 ]] || { echo "--size takes a whole number of MiB" >&2; exit 2; }
[[ "$leechers" =~ ^[0-9]+$ && "$leechers" -gt 0 ]] || { echo "--nodes takes a positive number" >&2; exit 2; }
[[ "$rounds" =~ ^[0-9]+$ && "$rounds" -gt 0 ]] || { echo "--rounds takes a positive number" >&2; exit 2; }
# `private` (torronto in a private network, --secret) and the bt-seed pair run only when
# asked for; building torronto is wanted for any of them.
wants() {
  case "$1" in
    private) $private && { [ -z "$only" ] || [ "$only" = private ]; } ;;
    torronto) [ -z "$only" ] || [ "$only" = torronto ] || [ "$only" = private ] ;;
    bt_torronto|bt_aria2) [ "$only" = bt-seed ] ;;
    *) [ -z "$only" ] || [ "$only" = "$1" ] ;;
  esac
}

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }

# ---------------------------------------------------------------------------------------
# Install what is missing

export PATH="$HOME/.cargo/bin:$PATH"
apt_pkgs=()
if { wants aria2 || wants bt_aria2; } && ! command -v aria2c >/dev/null; then apt_pkgs+=(aria2); fi
if { wants aria2 || wants rqbit; } && ! command -v transmission-create >/dev/null; then apt_pkgs+=(transmission-cli); fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  step "installing ${apt_pkgs[*]} (Debian)"
  # shellcheck source=scripts/apt-install.sh
  . "$repo/scripts/apt-install.sh"
  apt_install "${apt_pkgs[@]}"
fi
if wants rqbit && ! command -v rqbit >/dev/null; then
  step "installing rqbit (cargo install; takes a few minutes the first time)"
  cargo install rqbit --locked || cargo install rqbit
fi
for tool in python3 findmnt sha256sum dd; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
# The floor always builds: it also warms the machine up and measures the per-byte costs.
build=(-p torronto-floor)
{ wants torronto || wants bt_torronto; } && build+=(-p torronto-node)
step "building the floor$({ wants torronto || wants bt_torronto; } && echo " and torronto") (release)"
(cd "$repo" && cargo build --release "${build[@]}" --quiet)
target_dir=$(cd "$repo" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# TORRONTO_BIN: another build of the node to time (an A/B of two builds), as in the tests.
torronto="${TORRONTO_BIN:-$target_dir/release/torronto}"
floor="$target_dir/release/floor"

# ---------------------------------------------------------------------------------------
# Workspace, process bookkeeping, cleanup

work=$(mktemp -d "${TMPDIR:-/tmp}/torronto-bench.XXXXXX")
pids=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if $keep; then
    echo "kept $work" >&2
  else
    rm -rf "$work"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a background process with its output in a log; its pid lands in $last_pid.
spawn() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}
# Kills the given pids (SIGKILL) and forgets them.
stop() {
  local p q keep_pids=()
  for p in "$@"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for q in "${pids[@]}"; do
    local drop=false
    for p in "$@"; do [ "$p" = "$q" ] && drop=true; done
    $drop || keep_pids+=("$q")
  done
  pids=("${keep_pids[@]}")
}
peak_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
wait_port() {
  local port=$1 i
  for i in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$port" >&2; return 1
}
ports() { python3 "$helper" free-ports "$1"; }

# The clock: begin_wait starts the waiter (which samples CPU use first), start_clock starts
# the timed window, end_wait waits for every target and leaves the figures in OUT.
# Dirty pages left by earlier work (the random file, a seeder's copy) would be written
# back during a timed window and charged to whichever tool runs then: flush them first.
settle_disk() { sync; }

waiter=""
begin_wait() {  # OUT ROLE=PID,... TARGET...
  local out=$1 cpu=$2; shift 2
  settle_disk
  rm -f "$work/start" "$work/start.ready" "$work/start.pids"
  python3 "$helper" wait "$work/start" "$timeout_s" "$out" "$cpu" "$@" &
  waiter=$!
  pids+=("$waiter")
  while [ ! -e "$work/start.ready" ]; do
    kill -0 "$waiter" 2>/dev/null || { echo "the waiter failed" >&2; return 1; }
    sleep 0.01
  done
}
start_clock() {
  now >"$work/start.tmp"
  mv "$work/start.tmp" "$work/start"
}
end_wait() {
  local status=0
  wait "$waiter" || status=$?
  local keep_pids=() q
  for q in "${pids[@]}"; do [ "$q" = "$waiter" ] || keep_pids+=("$q"); done
  pids=("${keep_pids[@]}")
  return $status
}

results="$work/results.jsonl"
: >"$results"
fstype=$(findmnt -no FSTYPE -T "$work" 2>/dev/null || stat -f -c %T "$work")
timeout_s=$(( 120 + size_mib / 2 ))

step "creating a ${size_mib} MiB random file in $work ($fstype)"
mkdir -p "$work/data"
name=bench.bin
file="$work/data/$name"
head -c $(( size_mib * 1024 * 1024 )) /dev/urandom >"$file"
size=$(stat -c %s "$file")
t0=$(now)
sha=$(sha256sum "$file" | cut -d' ' -f1)
t1=$(now)
sha256sum_s=$(elapsed "$t0" "$t1")

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# Records one tool's run: tool seconds ok leecher_rss_kib seeder_rss_kib waitjson
record() {
  python3 - "$@" >>"$results" <<'EOF'
import json, sys
tool, ok, lrss, srss, waitjson, n, rnd = sys.argv[1:8]
w = json.load(open(waitjson)) if waitjson else {}
print(json.dumps({"tool": tool, "round": int(rnd), "ok": ok == "true", "seconds": w.get("seconds") if w.get("ok") else None,
                  "leecher_rss_kib": int(lrss), "seeder_rss_kib": int(srss), "leechers": int(n),
                  "cpu_seconds": w.get("cpu_seconds", {}), "threads": w.get("threads", {}),
                  "machine_busy": w.get("machine_busy"),
                  "per_target": w.get("per_target", {}), "top": w.get("top", [])}))
EOF
}

# Checks the leechers' copies; prints true or false.
verify_copies() {
  local ok=true f
  for f in "$@"; do
    if [ ! -f "$f" ] || [ "$(stat -c %s "$f")" != "$size" ] || [ "$(sha256sum "$f" | cut -d' ' -f1)" != "$sha" ]; then
      echo "copy $f is not the file" >&2
      ok=false
    fi
  done
  echo "$ok"
}

# ---------------------------------------------------------------------------------------
# torronto

insert_s=""
torronto_served=""
rqbit_uploaded=""
# `run_torronto private` runs the nodes in a private network: every connection encrypted.
run_torronto() {
  local tool=${1:-torronto} secure=()
  if [ "$tool" = private ]; then
    "$torronto" secret new >"$work/net.secret"
    secure=(--secret "$work/net.secret")
  fi
  step "$tool: 1 seeder + $leechers nodes"
  local base="$work/$tool-r$round" n=$(( leechers + 1 )) i
  mkdir -p "$base"
  read -r -a tports <<<"$(ports "$n")"
  : >"$base/peers.txt"
  for i in $(seq 0 $(( n - 1 ))); do echo "127.0.0.1:${tports[$i]}" >>"$base/peers.txt"; done
  local npids=() roles=()
  for i in $(seq 0 $(( n - 1 ))); do
    mkdir -p "$base/n$i"
    spawn "$base/n$i.log" env NO_COLOR=1 "$torronto" node --listen "127.0.0.1:${tports[$i]}" \
      --dir "$base/n$i" --peers "$base/peers.txt" "${secure[@]}"
    npids+=("$last_pid")
  done
  for i in $(seq 0 $(( n - 1 ))); do wait_port "${tports[$i]}"; done
  "$torronto" join --node "127.0.0.1:${tports[0]}" >/dev/null
  local a b
  a=$(now)
  "$torronto" insert "$file" --node "127.0.0.1:${tports[0]}" >/dev/null
  b=$(now)
  insert_s=$(elapsed "$a" "$b")

  local targets=() cpu="seeder=${npids[0]}"
  for i in $(seq 1 $(( n - 1 ))); do
    targets+=("file:$base/n$i/$name:$size")
    cpu+=",n$i=${npids[$i]}"
  done
  local ok=true
  begin_wait "$base/wait.json" "$cpu" "${targets[@]}"
  local perfs=() role
  if [ -n "$perf_dir" ]; then
    for i in $(seq 0 $(( n - 1 ))); do
      role=$([ "$i" = 0 ] && echo seeder || echo "n$i")
      perf record -q --call-graph dwarf,16384 -F 499 -p "${npids[$i]}" -o "$perf_dir/$tool-r$round-$role.data" 2>/dev/null &
      perfs+=("$!")
    done
    sleep 0.5  # perf attaches to each thread before the clock starts
  fi
  start_clock
  for i in $(seq 1 $(( n - 1 ))); do "$torronto" join --node "127.0.0.1:${tports[$i]}" >/dev/null; done
  end_wait || ok=false
  if [ ${#perfs[@]} -gt 0 ]; then kill -INT "${perfs[@]}"; wait "${perfs[@]}" || true; fi

  local lrss=0 r
  for i in $(seq 1 $(( n - 1 ))); do r=$(peak_kib "${npids[$i]}"); [ "$r" -gt "$lrss" ] && lrss=$r; done
  local srss; srss=$(peak_kib "${npids[0]}")
  if $ok; then
    local copies=()
    for i in $(seq 1 $(( n - 1 ))); do copies+=("$base/n$i/$name"); done
    [ "$(verify_copies "${copies[@]}")" = true ] || ok=false
    for i in $(seq 0 $(( n - 1 ))); do
      "$torronto" query --json --node "127.0.0.1:${tports[$i]}" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(sys.argv[1], "served", s.get("chunksServed"), "fetched", s.get("chunksFetched"))' "$( [ "$i" = 0 ] && echo seeder || echo "n$i")"
    done >"$base/served.txt"
    for i in $(seq 1 $(( n - 1 ))); do
      "$torronto" query --json --node "127.0.0.1:${tports[$i]}" | python3 -c '
import json, sys
s = json.load(sys.stdin); i = s["files"].index(sys.argv[1])
sys.exit(0 if s["local"][i] == 1.0 else 1)' "$name" || { echo "node n$i does not report local 1.0" >&2; ok=false; }
    done
  fi
  stop "${npids[@]}"
  record "$tool" "$ok" "$lrss" "$srss" "$base/wait.json" "$leechers" "$round"
  [ -f "$base/served.txt" ] && torronto_served="chunks (64 KiB) per node: $(paste -sd';' "$base/served.txt" | sed 's/;/; /g')"
  $keep || rm -rf "$base"/n*
}
run_private() { run_torronto private; }

# ---------------------------------------------------------------------------------------
# BitTorrent: torrent and tracker, shared by rqbit and aria2

tracker_port=""
torrent="$work/bench.torrent"
start_tracker() {
  [ -n "$tracker_port" ] && return 0
  tracker_port=$(ports 1)
  spawn "$work/tracker.out" python3 "$helper" tracker "$tracker_port" "$work/tracker.log"
  wait_port "$tracker_port"
}
make_torrent() {
  [ -e "$torrent" ] && return 0
  start_tracker
  step "making the torrent (transmission-create)"
  transmission-create -o "$torrent" -t "http://127.0.0.1:$tracker_port/announce" "$file" >"$work/transmission-create.log" 2>&1
}
reset_tracker() { python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]).read()" "http://127.0.0.1:$tracker_port/reset"; }

# ---------------------------------------------------------------------------------------
# rqbit

run_rqbit() {
  step "rqbit: 1 seeder + $leechers leechers"
  make_torrent
  reset_tracker
  local base="$work/rqbit-r$round" n=$(( leechers + 1 )) i
  mkdir -p "$base/seed"
  ln "$file" "$base/seed/$name" 2>/dev/null || cp "$file" "$base/seed/$name"
  read -r -a pp <<<"$(ports "$(( 2 * n ))")"   # peer ports, then HTTP API ports
  local peer=() api=()
  for i in $(seq 0 $(( n - 1 ))); do peer[$i]=${pp[$i]}; api[$i]=${pp[$(( n + i ))]}; done
  rqbit_cmd() {  # i dir [extra download args...]
    local i=$1 dir=$2; shift 2
    echo rqbit --disable-dht --disable-dht-persistence --disable-upnp-port-forward --disable-lsd \
      --http-api-listen-addr "127.0.0.1:${api[$i]}" --listen-ip 127.0.0.1 --listen-port "${peer[$i]}" --announce-port "${peer[$i]}" \
      --ipv4-only download --output-folder "$dir" "$@" "$torrent"
  }
  local rpids=()
  # shellcheck disable=SC2046
  spawn "$base/seed.log" env HOME="$base" XDG_CACHE_HOME="$base/cache" $(rqbit_cmd 0 "$base/seed" --overwrite)
  rpids+=("$last_pid")
  python3 "$helper" wait-seeder "http://127.0.0.1:$tracker_port" "${peer[0]}" 120
  local all_peers=""
  for i in $(seq 0 $(( n - 1 ))); do all_peers+="${all_peers:+,}127.0.0.1:${peer[$i]}"; done
  local targets=() later="" ok=true
  for i in $(seq 1 $(( n - 1 ))); do
    mkdir -p "$base/l$i"
    targets+=("rqbit:127.0.0.1:${api[$i]}")
  done
  begin_wait "$base/wait.json" "seeder=${rpids[0]}" "${targets[@]}"
  start_clock
  for i in $(seq 1 $(( n - 1 ))); do
    # shellcheck disable=SC2046
    spawn "$base/l$i.log" env HOME="$base" XDG_CACHE_HOME="$base/cache" \
      $(rqbit_cmd "$i" "$base/l$i" --initial-peers "$all_peers")
    rpids+=("$last_pid")
    later+="${later:+,}l$i=$last_pid"
  done
  echo "$later" >"$work/start.pids"
  end_wait || ok=false
  local lrss=0 r
  for i in $(seq 1 $(( n - 1 ))); do r=$(peak_kib "${rpids[$i]}"); [ "$r" -gt "$lrss" ] && lrss=$r; done
  local srss; srss=$(peak_kib "${rpids[0]}")
  local apis=""
  for i in $(seq 0 $(( n - 1 ))); do apis+=" 127.0.0.1:${api[$i]}"; done
  # shellcheck disable=SC2086
  rqbit_uploaded=$(python3 - $apis <<'EOF2' || true
import json, sys, urllib.request
out = []
for i, a in enumerate(sys.argv[1:]):
    try:
        s = json.load(urllib.request.urlopen(f"http://{a}/torrents/0/stats/v1", timeout=2))
        out.append(f"{'seeder' if i == 0 else f'l{i}'} {s['uploaded_bytes'] / 1048576:.0f}")
    except Exception as e:
        out.append(f"{i} ?")
print("; ".join(out))
EOF2
)
  stop "${rpids[@]}"
  if $ok; then
    local copies=()
    for i in $(seq 1 $(( n - 1 ))); do copies+=("$base/l$i/$name"); done
    [ "$(verify_copies "${copies[@]}")" = true ] || ok=false
  fi
  record rqbit "$ok" "$lrss" "$srss" "$base/wait.json" "$leechers" "$round"
  $keep || rm -rf "$base"/seed "$base"/l*
}

# ---------------------------------------------------------------------------------------
# aria2

ap=()  # the swarm's peer ports: the seeder's, then each leecher's
aria_args() {  # i dir
  echo --dir="$2" --seed-ratio=0.0 --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
    --enable-peer-exchange=true --listen-port="${ap[$1]}" --interface=127.0.0.1 --disable-ipv6=true \
    --bt-external-ip=127.0.0.1 --file-allocation=falloc --auto-file-renaming=false --allow-overwrite=true \
    --summary-interval=0 --console-log-level=warn --no-conf=true --bt-save-metadata=false
}

# aria2c seeds the torrent (a hard link of the file, checked before the clock) to the
# leechers; `run_aria2 bt` seeds torronto's export of the file instead (--only bt-seed).
run_aria2() {
  local tool=aria2 torrent_file=$torrent
  if [ "${1:-}" = bt ]; then
    step "bt-seed: aria2c seeds torronto's torrent to $leechers aria2c leechers"
    make_bt_export
    tool=aria2-bt torrent_file=$bt_torrent
  else
    step "aria2: 1 seeder + $leechers leechers"
    make_torrent
  fi
  reset_tracker
  local base="$work/$tool-r$round"
  read -r -a ap <<<"$(ports "$(( leechers + 1 ))")"
  mkdir -p "$base/seed"
  ln "$file" "$base/seed/$name" 2>/dev/null || cp "$file" "$base/seed/$name"
  # shellcheck disable=SC2046
  spawn "$base/seed.log" aria2c $(aria_args 0 "$base/seed") --check-integrity=true "$torrent_file"
  local seeder=$last_pid
  python3 "$helper" wait-seeder "http://127.0.0.1:$tracker_port" "${ap[0]}" 120
  aria2_leechers "$tool" "$base" "$torrent_file" "$seeder"
  $keep || rm -rf "$base"/seed
}

# Starts $leechers aria2c leechers of TORRENT together, the same flags whoever seeds (ports
# ap[1..]), and times them from their start until each has run its completion hook; then
# stops them and the seeder (SEEDER_PID, already announced to the tracker), checks the
# copies and records TOOL.
aria2_leechers() {  # tool base torrent seeder_pid
  local tool=$1 base=$2 torrent_file=$3 seeder=$4 n=$(( leechers + 1 )) i
  printf '#!/bin/sh\ntouch "$(dirname "$3")/.complete"\n' >"$base/hook.sh"
  chmod +x "$base/hook.sh"
  local apids=() targets=() later="" ok=true
  for i in $(seq 1 $(( n - 1 ))); do
    mkdir -p "$base/l$i"
    targets+=("exists:$base/l$i/.complete")
  done
  begin_wait "$base/wait.json" "seeder=$seeder" "${targets[@]}"
  start_clock
  for i in $(seq 1 $(( n - 1 ))); do
    # shellcheck disable=SC2046
    spawn "$base/l$i.log" aria2c $(aria_args "$i" "$base/l$i") --on-bt-download-complete="$base/hook.sh" "$torrent_file"
    apids+=("$last_pid")
    later+="${later:+,}l$i=$last_pid"
  done
  echo "$later" >"$work/start.pids"
  end_wait || ok=false
  local lrss=0 r
  for i in "${apids[@]}"; do r=$(peak_kib "$i"); [ "$r" -gt "$lrss" ] && lrss=$r; done
  local srss; srss=$(peak_kib "$seeder")
  stop "$seeder" "${apids[@]}"
  if $ok; then
    local copies=()
    for i in $(seq 1 $(( n - 1 ))); do copies+=("$base/l$i/$name"); done
    [ "$(verify_copies "${copies[@]}")" = true ] || ok=false
  fi
  record "$tool" "$ok" "$lrss" "$srss" "$base/wait.json" "$leechers" "$round"
  $keep || rm -rf "$base"/l*
}

# ---------------------------------------------------------------------------------------
# BitTorrent seeding (--only bt-seed): torronto's export against aria2 seeding it

bt_torrent="$work/export.torrent"
bt_dir="$work/bt-node"
bt_ctl_port=""
bt_port=""
# The torronto seeder: one node holding the file, listening for BitTorrent peers. Restarted
# every round (the export it recorded survives), so between its rounds it is in no swarm.
start_bt_node() {  # log
  spawn "$1" env NO_COLOR=1 "$torronto" node --listen "127.0.0.1:$bt_ctl_port" --dir "$bt_dir" \
    --peers "$work/bt-peers.txt" --bittorrent "127.0.0.1:$bt_port"
  wait_port "$bt_ctl_port"
}
# Inserts the file and exports it once, with the tracker in the .torrent: the hashing is
# done here, before any clock, as aria2c's seeder checks its copy before the clock.
make_bt_export() {
  [ -e "$bt_torrent" ] && return 0
  start_tracker
  read -r bt_ctl_port bt_port <<<"$(ports 2)"
  mkdir -p "$bt_dir"
  : >"$work/bt-peers.txt"
  step "inserting and exporting the file (torronto torrent --tracker)"
  start_bt_node "$work/bt-node-export.log"
  local pid=$last_pid
  "$torronto" insert "$file" --node "127.0.0.1:$bt_ctl_port" >/dev/null
  "$torronto" torrent "$name" --out "$bt_torrent" --tracker "http://127.0.0.1:$tracker_port/announce" \
    --node "127.0.0.1:$bt_ctl_port" >"$work/bt-magnet.txt" 2>/dev/null
  stop "$pid"
}

run_bt_torronto() {
  step "bt-seed: torronto seeds to $leechers aria2c leechers"
  make_bt_export
  reset_tracker
  local base="$work/torronto-bt-r$round"
  mkdir -p "$base"
  start_bt_node "$base/node.log"
  local seeder=$last_pid
  read -r -a ap <<<"$bt_port $(ports "$leechers")"
  python3 "$helper" wait-seeder "http://127.0.0.1:$tracker_port" "$bt_port" 120
  aria2_leechers torronto-bt "$base" "$bt_torrent" "$seeder"
}

run_bt_aria2() { run_aria2 bt; }

# ---------------------------------------------------------------------------------------
# The floor

run_floor() {
  step "floor: the file to $leechers receivers, hashed and written, no protocol"
  local ok=true
  settle_disk
  # A receiver that fell short makes "ok" false in the JSON, and record() then leaves
  # the round without seconds (shown as failed).
  "$floor" run "$file" "$work" "$leechers" >"$work/floor.json" || ok=false
  record floor "$ok" 0 0 "$work/floor.json" "$leechers" "$round"
}

# ---------------------------------------------------------------------------------------
# Query latency on a node holding 1,000 files

query_json=""
query_cli=""
run_query() {
  step "Query latency: a node holding 1,000 small files"
  local base="$work/query" port
  mkdir -p "$base/dir" "$base/src"
  port=$(ports 1)
  : >"$base/peers.txt"
  # Every control request carries the token; this client is not the CLI, so it is given one.
  local token; token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  spawn "$base/node.log" env NO_COLOR=1 TORRONTO_TOKEN="$token" "$torronto" node --listen "127.0.0.1:$port" \
    --dir "$base/dir" --peers "$base/peers.txt"
  local qpid=$last_pid
  wait_port "$port"
  query_json=$(python3 "$helper" query-latency "127.0.0.1:$port" "$base/src" 1000 50 "$token")
  if "$torronto" query --node "127.0.0.1:$port" >/dev/null 2>"$base/cli.err"; then
    query_cli="works"
  else
    query_cli="FAILS: $(head -c 200 "$base/cli.err")"
  fi
  stop "$qpid"
}

# The first few GiB written after a quiet spell cost this VM two to three times the CPU
# of later ones (seen in the floor and in torronto's first rounds), so an untimed floor
# run goes first rather than charging that to whichever tool would.
step "warming up: one untimed floor run"
"$floor" run "$file" "$work" "$leechers" >/dev/null

# Per-byte costs, in CPU-seconds (on a shared machine CPU time is steadier than wall time):
# SHA-256 of 64 KiB chunks on one core, loopback TCP (sendfile in, one read copy out, both
# ends' CPU), and writing into fresh page-cache pages (dd from /dev/zero, its user+sys time).
step "measuring per-byte costs: hashing, loopback TCP, page-cache writes"
"$floor" probe-hash >"$work/probe-hash.json"
"$floor" probe-net "$file" >"$work/probe-net.json"
settle_disk
TIMEFORMAT='%R %U %S'
{ time dd if=/dev/zero of="$work/dd.bin" bs=1M count="$size_mib" status=none; } 2>"$work/dd.time"
rm -f "$work/dd.bin"
read -r dd_real dd_user dd_sys <"$work/dd.time"
echo "{\"bytes\": $size, \"seconds\": $dd_real, \"cpu_seconds\": $(python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$dd_user" "$dd_sys")}" >"$work/probe-write.json"
# The tools take turns, round after round, each round starting with the next tool, so a
# busy spell on a shared machine hits one round of each rather than all of one tool.
tools=()
if [ "$only" = bt-seed ]; then
  tools=(bt_torronto bt_aria2)
else
  for tool in torronto private rqbit aria2; do wants "$tool" && tools+=("$tool"); done
fi
for round in $(seq 1 "$rounds"); do
  [ "$rounds" -gt 1 ] && step "round $round of $rounds"
  for i in "${!tools[@]}"; do
    tool=${tools[$(( (i + round - 1) % ${#tools[@]} ))]}
    "run_$tool"
  done
  wants floor && run_floor
done
wants torronto && run_query

# ---------------------------------------------------------------------------------------
# Report

echo
echo "== replication: 1 seeder -> $leechers leechers, ${size_mib} MiB file, loopback =="
echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2/1048576 }' /proc/meminfo), files on $fstype ($work)"
echo "torronto: $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null)$(cd "$repo" && [ -n "$(git status --porcelain -- core native-node 2>/dev/null)" ] && echo " + uncommitted changes in core/ or native-node/")"
echo "load average before the run: $load_before (the machine may be shared with other work; see 'machine busy' below)"
if [ "$only" = bt-seed ]; then
  python3 "$helper" bt-table "$results" "$size_mib"
else
  python3 "$helper" table "$results" "$size_mib"
  python3 "$helper" estimate "$results" "$size_mib" "$leechers" "$work/probe-hash.json" "$work/probe-net.json" "$work/probe-write.json"
fi
echo
echo "CPU during each timed window (seconds of CPU per process; machine busy = both cores, all processes):"
python3 - "$results" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    cpu = r.get("cpu_seconds") or {}
    s = r.get("seconds")
    per = "  ".join(f"{k} {v:.1f}s" for k, v in cpu.items())
    ours = sum(cpu.values())
    busy = r.get("machine_busy")
    extra = ""
    if s and busy is not None:
        extra = f"  | machine busy {busy*100:.0f}% of 2 cores, this tool's processes {ours / s * 100:.0f}% of one core"
    print(f"  {r['tool']:<9} round {r.get('round', 1)}  {per}{extra}")
    for role, th in (r.get("threads") or {}).items():
        if th and role != "seeder" and role not in ("n1", "l1"):
            continue
        if th:
            print(f"    {role} by thread: " + ", ".join(f"{k} {v:.1f}s" for k, v in list(th.items())[:6]))
print("top, sampled mid-window (other users' processes included):")
names = {"torronto": "torronto", "rqbit": "rqbit", "aria2": "aria2c"}
for line in open(sys.argv[1]):
    r = json.loads(line)
    snaps, s = r.get("top") or [], r.get("seconds") or 0
    if not snaps:
        continue
    snap = min(snaps, key=lambda x: abs(x["t"] - s / 2))
    lines = snap["top"].splitlines()
    keep = [l for l in lines if l.startswith("%Cpu")]
    head = next((i for i, l in enumerate(lines) if l.strip().startswith("PID")), None)
    if head is not None:
        keep += [l for l in lines[head + 1:head + 9]]
    print(f"  {r['tool']} (round {r.get('round', 1)}) at {snap['t']} s:")
    for l in keep:
        print("    " + l.rstrip())
EOF
[ -n "$rqbit_uploaded" ] && echo "rqbit MiB uploaded per process: $rqbit_uploaded"
if wants torronto; then
  [ -n "$torronto_served" ] && echo "torronto $torronto_served"
  echo
  echo "hashing cost: torronto insert (copy + SHA-256 of 64 KiB chunks) ${insert_s} s for ${size_mib} MiB" \
    "= $(python3 -c "import sys; print(f'{float(sys.argv[1]) * 1024 / float(sys.argv[2]):.2f}')" "$insert_s" "$size_mib") s/GiB;" \
    "sha256sum ${sha256sum_s} s = $(python3 -c "import sys; print(f'{float(sys.argv[1]) * 1024 / float(sys.argv[2]):.2f}')" "$sha256sum_s" "$size_mib") s/GiB (file in page cache)"
  python3 - "$query_json" "$query_cli" <<'EOF'
import json, sys
q = json.loads(sys.argv[1])
print(f"Query latency, node holding {q['files']} files (1-10 KiB; reply {q['reply_bytes']} bytes), {q['rounds']} round trips:")
print(f"  new connection each: median {q['fresh_median_ms']} ms, p99 {q['fresh_p99_ms']} ms"
      f"  (target < 20 ms: {'meets' if q['fresh_p99_ms'] < 20 else 'misses'})")
print(f"  one kept connection: median {q['kept_median_ms']} ms, p99 {q['kept_p99_ms']} ms")
print(f"  (inserting the 1,000 files took {q['insert_seconds']} s; `torronto query` on that node {sys.argv[2]})")
EOF
fi
if $keep; then echo "logs and results in $work"; fi
