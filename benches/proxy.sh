#!/usr/bin/env bash
# Portcullis proxy benchmark: the gateway vs nginx as a bare reverse proxy vs
# the upstream reached directly, all measured in the same run.
#
#   benches/proxy.sh                                  # defaults: 10s runs, 32 connections
#   BENCH_DURATION=5s BENCH_CONNS=64 benches/proxy.sh
#   BENCH_TARGETS="gateway gateway_nolog gateway_waf nginx direct" benches/proxy.sh
#   (gateway_waf: the gateway with every bundled pack in rules/ at paranoia 1)
#
# Output: a Markdown table on stdout, and the same table with machine details
# in benches/results/latest.md.  Progress goes to stderr.  Exit status is
# non-zero (and latest.md is left alone) if any target returned a non-2xx
# response, had socket errors beyond BENCH_SOCKET_ERROR_TOLERANCE, or died.
# See benches/README.md for what is measured and how.

set -Eeuo pipefail

# ---------------------------------------------------------------------------
# Parameters (all overridable from the environment)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DURATION=${BENCH_DURATION:-10s}          # measured run per (workload, target)
BENCH_WARMUP=${BENCH_WARMUP:-2s}               # warm-up run before each measured run
BENCH_CONNS=${BENCH_CONNS:-32}                 # wrk -c
BENCH_THREADS=${BENCH_THREADS:-1}              # wrk -t
BENCH_WRK_TIMEOUT=${BENCH_WRK_TIMEOUT:-2s}     # wrk --timeout
BENCH_TARGETS=${BENCH_TARGETS:-"gateway gateway_waf nginx direct"}   # also: gateway_nolog
BENCH_WORKLOADS=${BENCH_WORKLOADS:-"get get_query post_json_2k post_form_32k"}
BENCH_PROXY_CPU=${BENCH_PROXY_CPU:-0}          # CPU list for the proxy under test
BENCH_LOAD_CPU=${BENCH_LOAD_CPU:-1}            # CPU list for wrk and the upstream
BENCH_SOCKET_ERROR_TOLERANCE=${BENCH_SOCKET_ERROR_TOLERANCE:-0.0001}  # fraction of requests
BENCH_NGINX_LOG_BUFFER=${BENCH_NGINX_LOG_BUFFER:-"buffer=64k flush=1s"}  # "" = write per request
BENCH_NO_BUILD=${BENCH_NO_BUILD:-0}            # 1: do not run cargo build
BENCH_BIN=${BENCH_BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis"}
BENCH_OUT=${BENCH_OUT:-"$ROOT/benches/results/latest.md"}
BENCH_KEEP_TMP=${BENCH_KEEP_TMP:-0}            # 1: keep the temp dir (logs, raw wrk output)

WRK_DIR="$ROOT/benches/wrk"

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[bench] FATAL: %s\n' "$*" >&2; exit 1; }

for tool in wrk nginx taskset awk curl getconf; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (apt-get install -y wrk nginx-light curl util-linux gawk)"
done
[[ $(nproc --all) -ge 2 ]] || die "needs at least 2 CPUs (proxy on one, load generator + upstream on another)"
read -r -a WORKLOADS <<< "$BENCH_WORKLOADS"   # may repeat a name (e.g. to watch memory)
[[ ${#WORKLOADS[@]} -gt 0 ]] || die "BENCH_WORKLOADS is empty"
for wl in "${WORKLOADS[@]}"; do
    [[ -f "$WRK_DIR/$wl.lua" ]] || die "no wrk script $WRK_DIR/$wl.lua"
done
for t in $BENCH_TARGETS; do
    case $t in gateway|gateway_nolog|gateway_waf|nginx|direct) ;; *) die "unknown target '$t'" ;; esac
done
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------
# Temp dir, process bookkeeping, cleanup

TMP=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
chmod 755 "$TMP"        # nginx workers may run as 'nobody' and must read the docroot
declare -a PIDS=()      # every process we start, killed by PID at exit
FAILED=0

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.2
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $BENCH_KEEP_TMP == 1 || $rc != 0 || $FAILED != 0 ]]; then
        log "temp dir kept for inspection: $TMP ($(du -sh "$TMP" 2>/dev/null | cut -f1))"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback TCP port in 20000-59999 (nothing answers a connect on it,
# and it has not been handed out already in this run).
declare -A USED_PORTS=()
free_port() {        # VAR -> sets VAR (not run in a subshell, so USED_PORTS sticks)
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        [[ -n ${USED_PORTS[$p]:-} ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS[$p]=1
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free port found"
}

wait_listening() {   # port pid name
    # 60 s: the gateway compiles every bundled pack (Hyperscan) before it listens
    local port=$1 pid=$2 name=$3
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) exited during start-up; see $TMP"
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name did not listen on 127.0.0.1:$port within 60s"
}

children_of() {      # direct children of a PID (nginx workers of a master)
    local parent=$1 f line
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        line=${line##*) }
        set -- $line
        [[ $2 == "$parent" ]] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
    return 0
}

cpu_ticks() {        # utime+stime (clock ticks, all threads) summed over PIDs
    local total=0 pid line
    for pid in "$@"; do
        read -r line 2>/dev/null <"/proc/$pid/stat" || die "process $pid vanished"
        line=${line##*) }
        set -- $line
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

ctx_switches() {     # voluntary+involuntary context switches, all threads of PIDs
    local pid
    for pid in "$@"; do cat /proc/"$pid"/task/*/status 2>/dev/null; done \
        | awk '$1 ~ /^(non)?voluntary_ctxt_switches:$/ { n += $2 } END { print n + 0 }'
}

rss_kb() {           # VmRSS summed over PIDs
    local pid total=0 v
    for pid in "$@"; do v=$(proc_status "$pid" VmRSS); total=$((total + ${v:-0})); done
    echo "$total"
}

proc_status() {      # PID KEY -> value in kB from /proc/PID/status
    awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}

thread_summary() {   # "3 threads: 1 tokio-runtime-w, 1 access-log, ..."
    local pid=$1
    local n; n=$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 | wc -l)
    printf '%s threads: %s' "$n" \
        "$(cat /proc/"$pid"/task/*/comm | sort | uniq -c | awk '{c=$1; $1=""; printf "%s%d×%s", (NR>1?", ":""), c, substr($0,2)}')"
}

# ---------------------------------------------------------------------------
# Build

if [[ $BENCH_NO_BUILD != 1 ]]; then
    log "cargo build --release (no-op if up to date)"
    (cd "$ROOT" && cargo build --release --bin portcullis >&2) || die "cargo build --release failed"
fi
[[ -x $BENCH_BIN ]] || die "gateway binary not found at $BENCH_BIN"

for v in UP_PORT GW_PORT GW_ADMIN GWN_PORT GWN_ADMIN GWW_PORT GWW_ADMIN NGX_PORT; do free_port "$v"; done

nginx_common() {     # prefix -> lines shared by both nginx configs
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; multi_accept on; }
EOF
}
nginx_http_common() {
    cat <<EOF
    client_body_temp_path $1/tmp-body;
    proxy_temp_path $1/tmp-proxy;
    fastcgi_temp_path $1/tmp-fastcgi;
    uwsgi_temp_path $1/tmp-uwsgi;
    scgi_temp_path $1/tmp-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_max_body_size 10m;
    client_body_buffer_size 64k;
EOF
}

# ---------------------------------------------------------------------------
# Upstream: nginx, 1 worker, on the load CPU.  Every request (GET or POST) is
# answered "ok\n" with 200, and only after the whole request body has been
# read into memory: the mirror module reads the body in the precontent phase
# before the content phase runs (a plain `return` would answer first and
# discard the body afterwards).  POST to a static file gives 405, which
# error_page turns into the same 200 "ok\n".

UP="$TMP/upstream"; mkdir -p "$UP/www"; printf 'ok\n' > "$UP/www/ok.txt"
{
    nginx_common "$UP"
    cat <<EOF
http {
    access_log off;
$(nginx_http_common "$UP")
    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        root $UP/www;
        default_type text/plain;
        location / {
            mirror /_read_body;
            mirror_request_body on;
            error_page 405 =200 /ok.txt;
            rewrite ^ /ok.txt break;
        }
        location = /ok.txt { }
        location = /_read_body { internal; return 204; }
    }
}
EOF
} > "$UP/nginx.conf"

# nginx as a bare reverse proxy, 1 worker, on the proxy CPU.  It sets the same
# forwarding headers the gateway sets and writes a JSON access line per
# request with similar fields.
NGX="$TMP/nginx-proxy"; mkdir -p "$NGX"
{
    nginx_common "$NGX"
    cat <<EOF
http {
    log_format bench escape=json '{"ts":"\$time_iso8601","type":"access","request_id":"\$request_id",'
        '"client_ip":"\$remote_addr","method":"\$request_method","host":"\$host","path":"\$uri",'
        '"proto":"\$server_protocol","status":\$status,"bytes_sent":\$bytes_sent,'
        '"duration_ms":"\$request_time","upstream_ms":"\$upstream_response_time",'
        '"user_agent":"\$http_user_agent"}';
    access_log $NGX/access.log bench ${BENCH_NGINX_LOG_BUFFER};
$(nginx_http_common "$NGX")
    upstream app {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGX_PORT backlog=4096;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header Forwarded "for=\$remote_addr;proto=\$scheme;host=\"\$host\"";
            proxy_set_header X-Request-Id \$request_id;
        }
    }
}
EOF
} > "$NGX/nginx.conf"

gateway_config() {   # dir port admin access_log(true|false) waf(true|false)
    if [[ ${5:-false} == true ]]; then
        cat <<EOF
waf:
  paranoia: 1
  rules: ["$ROOT/rules/*.yaml"]
EOF
    fi
    cat <<EOF
listen:
  - addr: "127.0.0.1:$2"
upstream:
  url: "http://127.0.0.1:$UP_PORT"
admin:
  listen: "127.0.0.1:$3"
store:
  path: "$1/data"
logging:
  dir: "$1/logs"
  level: info
  access_log: $4
EOF
}

start_nginx() {      # dir cpu name -> sets NGINX_PID
    local dir=$1 cpu=$2 name=$3
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" 2>"$dir/nginx-t.err" \
        || die "$name config rejected: $(cat "$dir/nginx-t.err")"
    taskset -c "$cpu" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        >"$dir/stdout.log" 2>"$dir/stderr.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
}

start_gateway() {    # dir port admin access_log name [waf] -> sets GATEWAY_PID
    local dir=$1 port=$2 admin=$3 alog=$4 name=$5 waf=${6:-false}
    mkdir -p "$dir"
    gateway_config "$dir" "$port" "$admin" "$alog" "$waf" > "$dir/portcullis.yaml"
    "$BENCH_BIN" check -c "$dir/portcullis.yaml" >"$dir/check.log" 2>&1 \
        || die "$name config rejected: $(cat "$dir/check.log")"
    # No TOKIO_WORKER_THREADS: tokio sizes its pool from available_parallelism(),
    # which honours the affinity mask, so pinning to one CPU gives one worker.
    taskset -c "$BENCH_PROXY_CPU" env -u TOKIO_WORKER_THREADS -u PORTCULLIS_LOG \
        "$BENCH_BIN" run -c "$dir/portcullis.yaml" >/dev/null 2>"$dir/stderr.log" &
    GATEWAY_PID=$!
    PIDS+=("$GATEWAY_PID")
}

log "temp dir $TMP; ports: upstream $UP_PORT, gateway $GW_PORT (admin $GW_ADMIN), nginx $NGX_PORT"
start_nginx "$UP" "$BENCH_LOAD_CPU" upstream; UP_PID=$NGINX_PID
wait_listening "$UP_PORT" "$UP_PID" upstream

declare -A TPORT=() TPIDS_MASTER=()
TPORT[direct]=$UP_PORT
TPIDS_MASTER[direct]=$UP_PID   # the upstream's CPU is read for every run
for t in $BENCH_TARGETS; do
    case $t in
    gateway)
        start_gateway "$TMP/gateway" "$GW_PORT" "$GW_ADMIN" true gateway
        TPORT[$t]=$GW_PORT; TPIDS_MASTER[$t]=$GATEWAY_PID ;;
    gateway_nolog)
        start_gateway "$TMP/gateway_nolog" "$GWN_PORT" "$GWN_ADMIN" false gateway_nolog
        TPORT[$t]=$GWN_PORT; TPIDS_MASTER[$t]=$GATEWAY_PID ;;
    gateway_waf)
        start_gateway "$TMP/gateway_waf" "$GWW_PORT" "$GWW_ADMIN" true gateway_waf true
        TPORT[$t]=$GWW_PORT; TPIDS_MASTER[$t]=$GATEWAY_PID ;;
    nginx)
        start_nginx "$NGX" "$BENCH_PROXY_CPU" nginx-proxy
        TPORT[$t]=$NGX_PORT; TPIDS_MASTER[$t]=$NGINX_PID ;;
    direct) ;;
    esac
    wait_listening "${TPORT[$t]}" "${TPIDS_MASTER[$t]}" "$t"
done

target_pids() {      # every PID whose CPU counts for a target
    local t=$1 m=${TPIDS_MASTER[$1]}
    case $t in
    nginx|direct) echo "$m"; children_of "$m" ;;
    *) echo "$m" ;;
    esac
}
alive_or_fail() {    # target -> 0 if every process is still there
    local t=$1 pid
    for pid in $(target_pids "$t"); do
        kill -0 "$pid" 2>/dev/null || return 1
    done
    kill -0 "${TPIDS_MASTER[$t]}" 2>/dev/null
}

# ---------------------------------------------------------------------------
# Sanity: every target answers GET and a 32 KB POST with 200 "ok".

{ printf 'x='; head -c 32766 /dev/zero | tr '\0' 'a'; } > "$TMP/post32k.body"
for t in direct ${BENCH_TARGETS//direct/}; do
    url="http://127.0.0.1:${TPORT[$t]}"
    code=$(curl -sS -o "$TMP/sanity.out" -w '%{http_code}' "$url/") || die "$t: GET / failed"
    [[ $code == 200 && $(<"$TMP/sanity.out") == ok ]] || die "$t: GET / gave $code '$(head -c 200 "$TMP/sanity.out")'"
    code=$(curl -sS -o "$TMP/sanity.out" -w '%{http_code}' -H 'Content-Type: application/x-www-form-urlencoded' \
        --data-binary @"$TMP/post32k.body" "$url/submit") || die "$t: POST failed"
    [[ $code == 200 && $(<"$TMP/sanity.out") == ok ]] || die "$t: POST 32 KB gave $code '$(head -c 200 "$TMP/sanity.out")'"
done

# Pinning and thread check.
declare -A START_INFO=()
for t in $BENCH_TARGETS; do
    [[ $t == direct ]] && continue
    info=""
    for pid in $(target_pids "$t"); do
        info+="pid $pid affinity $(taskset -pc "$pid" | awk -F': ' '{print $2}'), $(thread_summary "$pid"); "
    done
    START_INFO[$t]=$info
    log "$t: $info"
done
for t in $BENCH_TARGETS; do
    case $t in gateway*)
        w=$(cat /proc/"${TPIDS_MASTER[$t]}"/task/*/comm | awk '/^tokio-(runtime|rt)-w/ { n++ } END { print n + 0 }')
        [[ $w == 1 ]] || log "WARNING: $t has $w tokio worker threads (expected 1 with one CPU in its mask)"
        START_INFO[$t]+="VmRSS after start-up $(proc_status "${TPIDS_MASTER[$t]}" VmRSS) kB"
    esac
done
log "upstream: pid $UP_PID affinity $(taskset -pc "$UP_PID" | awk -F': ' '{print $2}'), load CPU $BENCH_LOAD_CPU"

# ---------------------------------------------------------------------------
# Runs

declare -A R_RPS=() R_P50=() R_P99=() R_CPU=() R_UPCPU=() R_UTIL=() R_REQ=() R_ERR=() R_P90=() R_MAX=() R_STATUS=()
declare -A R_CSW=() R_RSS=() SENT=()   # SENT: requests wrk completed per target (warm-up + measured)
declare -a FAIL_MSGS=() WARNINGS=()
ABORT=0

parse_result() {     # file -> sets RES[...] from the BENCH_RESULT line
    local line kv
    RES=()
    line=$(grep '^BENCH_RESULT ' "$1" | tail -1) || return 1
    for kv in ${line#BENCH_RESULT }; do RES[${kv%%=*}]=${kv#*=}; done
}

# Checks one wrk run; returns 1 (and records why) if it must not be trusted.
check_run() {        # label file
    local label=$1 file=$2 sock ok=0
    if ! parse_result "$file"; then
        FAIL_MSGS+=("$label: wrk produced no result (see $file)"); return 1
    fi
    if [[ ${RES[requests]} -le 0 ]]; then
        FAIL_MSGS+=("$label: zero requests completed"); ok=1
    fi
    if [[ ${RES[err_status]} -gt 0 ]]; then
        FAIL_MSGS+=("$label: ${RES[err_status]} non-2xx/3xx responses out of ${RES[requests]}"); ok=1
    fi
    sock=$((RES[err_connect] + RES[err_read] + RES[err_write] + RES[err_timeout]))
    if awk -v s="$sock" -v n="${RES[requests]}" -v tol="$BENCH_SOCKET_ERROR_TOLERANCE" \
            'BEGIN { exit !(s > n * tol) }'; then
        FAIL_MSGS+=("$label: socket errors connect ${RES[err_connect]} read ${RES[err_read]} write ${RES[err_write]} timeout ${RES[err_timeout]} (${RES[requests]} requests; tolerance $BENCH_SOCKET_ERROR_TOLERANCE)"); ok=1
    fi
    return $ok
}

run_wrk() {          # duration script url outfile [--latency]
    local d=$1 s=$2 u=$3 out=$4; shift 4
    taskset -c "$BENCH_LOAD_CPU" wrk -t"$BENCH_THREADS" -c"$BENCH_CONNS" -d"$d" \
        --timeout "$BENCH_WRK_TIMEOUT" "$@" -s "$s" "$u" >"$out" 2>&1 || true
}

fmt_lat() { awk -v u="$1" 'BEGIN { if (u < 1000) printf "%d µs", u; else if (u < 1e6) printf "%.2f ms", u/1000; else printf "%.2f s", u/1e6 }'; }

declare -A RES=()
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for k in "${!WORKLOADS[@]}"; do
    wl=${WORKLOADS[$k]}
    script="$WRK_DIR/$wl.lua"
    for t in $BENCH_TARGETS; do
        [[ $ABORT == 1 ]] && break 2
        url="http://127.0.0.1:${TPORT[$t]}"
        label="$wl/$t"
        R_STATUS[$k|$t]=ok
        log "$label: warm-up $BENCH_WARMUP"
        run_wrk "$BENCH_WARMUP" "$script" "$url" "$TMP/wrk-$k-$wl-$t-warmup.txt"
        if ! check_run "$label (warm-up)" "$TMP/wrk-$k-$wl-$t-warmup.txt"; then R_STATUS[$k|$t]=FAILED; fi
        SENT[$t]=$(( ${SENT[$t]:-0} + ${RES[requests]:-0} ))
        if ! alive_or_fail "$t"; then
            FAIL_MSGS+=("$label: $t process died during warm-up"); R_STATUS[$k|$t]=FAILED; ABORT=1; break 2
        fi

        mapfile -t pids < <(target_pids "$t")
        mapfile -t upids < <(target_pids direct)
        [[ ${#pids[@]} -gt 0 && ${#upids[@]} -gt 0 ]] || die "$label: cannot find the processes to measure"
        c0=$(cpu_ticks "${pids[@]}"); u0=$(cpu_ticks "${upids[@]}"); s0=$(ctx_switches "${pids[@]}"); t0=$(date +%s%N)
        log "$label: measuring $BENCH_DURATION"
        run_wrk "$BENCH_DURATION" "$script" "$url" "$TMP/wrk-$k-$wl-$t.txt" --latency
        t1=$(date +%s%N)
        if ! alive_or_fail "$t"; then
            FAIL_MSGS+=("$label: $t process died during the measured run"); R_STATUS[$k|$t]=FAILED; ABORT=1; break 2
        fi
        c1=$(cpu_ticks "${pids[@]}"); u1=$(cpu_ticks "${upids[@]}"); s1=$(ctx_switches "${pids[@]}")
        mapfile -t pids_after < <(target_pids "$t")
        if [[ "${pids[*]}" != "${pids_after[*]}" ]]; then
            FAIL_MSGS+=("$label: $t process set changed during the run (${pids[*]} -> ${pids_after[*]}): a worker crashed?")
            R_STATUS[$k|$t]=FAILED
        fi
        if ! check_run "$label" "$TMP/wrk-$k-$wl-$t.txt"; then R_STATUS[$k|$t]=FAILED; fi
        [[ -n ${RES[requests]:-} ]] || continue
        n=${RES[requests]}
        SENT[$t]=$(( ${SENT[$t]:-0} + n ))
        R_CSW[$k|$t]=$(awk -v c=$((s1 - s0)) -v n="$n" 'BEGIN { printf "%.2f", n ? c / n : 0 }')
        R_RSS[$k|$t]=$(rss_kb "${pids[@]}")
        R_REQ[$k|$t]=$n
        R_ERR[$k|$t]="${RES[err_status]}/$((RES[err_connect] + RES[err_read] + RES[err_write] + RES[err_timeout]))"
        R_RPS[$k|$t]=$(awk -v n="$n" -v d="${RES[duration_us]}" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
        R_P50[$k|$t]=${RES[p50_us]}; R_P90[$k|$t]=${RES[p90_us]}
        R_P99[$k|$t]=${RES[p99_us]}; R_MAX[$k|$t]=${RES[max_us]}
        R_CPU[$k|$t]=$(awk -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f", n ? c * 1e6 / hz / n : 0 }')
        R_UPCPU[$k|$t]=$(awk -v c=$((u1 - u0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f", n ? c * 1e6 / hz / n : 0 }')
        R_UTIL[$k|$t]=$(awk -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f%%", 100 * (c / hz) / (ns / 1e9) }')
        log "$label: ${R_RPS[$k|$t]} req/s, p50 $(fmt_lat "${R_P50[$k|$t]}"), p99 $(fmt_lat "${R_P99[$k|$t]}"), CPU ${R_CPU[$k|$t]} µs/req (${R_UTIL[$k|$t]} of a core), ${R_STATUS[$k|$t]}"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# End-of-run facts: memory, threads, access-log accounting

declare -A END_INFO=()
for t in $BENCH_TARGETS; do
    m=${TPIDS_MASTER[$t]}
    kill -0 "$m" 2>/dev/null || { END_INFO[$t]="process gone"; continue; }
    case $t in
    gateway*)
        END_INFO[$t]="VmHWM $(proc_status "$m" VmHWM) kB, VmRSS $(proc_status "$m" VmRSS) kB, $(thread_summary "$m")"
        case $t in gateway) admin=$GW_ADMIN ;; gateway_waf) admin=$GWW_ADMIN ;; *) admin=$GWN_ADMIN ;; esac
        dropped=$(curl -sS "http://127.0.0.1:$admin/metrics" 2>/dev/null | awk '$1 == "portcullis_access_log_dropped_total" { print $2 }')
        END_INFO[$t]+=", access-log lines dropped ${dropped:-?}"
        if [[ $t == gateway ]]; then
            sleep 0.5   # the writer thread flushes every 100 ms when idle
            lines=$(cat "$TMP/gateway/logs/access.log"* 2>/dev/null | wc -l)
            END_INFO[$t]+=", $lines access-log lines for ${SENT[$t]:-0} requests wrk completed (+2 sanity)"
            if [[ $lines -lt ${SENT[$t]:-0} ]]; then
                WARNINGS+=("gateway access log has $lines lines but wrk completed ${SENT[$t]} requests (dropped ${dropped:-?}): the gateway logged less than nginx did")
            fi
        fi
        ;;
    nginx|direct)
        for w in $(children_of "$m"); do
            END_INFO[$t]+="worker $w VmHWM $(proc_status "$w" VmHWM) kB; "
        done ;;
    esac
done
GW_HWM=""
[[ -n ${TPIDS_MASTER[gateway]:-} ]] && kill -0 "${TPIDS_MASTER[gateway]}" 2>/dev/null \
    && GW_HWM=$(proc_status "${TPIDS_MASTER[gateway]}" VmHWM)

# ---------------------------------------------------------------------------
# Tables

main_table() {
    echo "| workload | target | req/s | p50 | p99 | CPU µs/req | CPU vs nginx |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    local wl t cpu ratio rps p50 p99
    for k in "${!WORKLOADS[@]}"; do
        wl=${WORKLOADS[$k]}
        for t in $BENCH_TARGETS; do
            [[ -n ${R_STATUS[$k|$t]:-} ]] || continue
            rps=${R_RPS[$k|$t]:--}; cpu=${R_CPU[$k|$t]:--}; ratio=""
            p50=$([[ -n ${R_P50[$k|$t]:-} ]] && fmt_lat "${R_P50[$k|$t]}" || echo -)
            p99=$([[ -n ${R_P99[$k|$t]:-} ]] && fmt_lat "${R_P99[$k|$t]}" || echo -)
            if [[ $t == direct ]]; then
                cpu="${R_UPCPU[$k|$t]:--} (upstream)"
            elif [[ $t == gateway* ]]; then
                if [[ -n ${R_CPU[$k|nginx]:-} && -n ${R_CPU[$k|$t]:-} ]]; then
                    ratio=$(awk -v a="${R_CPU[$k|$t]}" -v b="${R_CPU[$k|nginx]}" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }')
                else
                    ratio="-"
                fi
            fi
            [[ ${R_STATUS[$k|$t]} == ok ]] || t="$t **FAILED**"
            echo "| $wl | $t | $rps | $p50 | $p99 | $cpu | $ratio |"
        done
    done
}

details_table() {
    echo "| workload | target | requests | non-2xx/socket errors | p90 | max | proxy CPU busy | proxy ctx switches/req | proxy RSS after (kB) | upstream CPU µs/req |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    local wl t
    for k in "${!WORKLOADS[@]}"; do
        wl=${WORKLOADS[$k]}
        for t in $BENCH_TARGETS; do
            [[ -n ${R_REQ[$k|$t]:-} ]] || continue
            echo "| $wl | $t | ${R_REQ[$k|$t]} | ${R_ERR[$k|$t]} | $(fmt_lat "${R_P90[$k|$t]}") | $(fmt_lat "${R_MAX[$k|$t]}") | $([[ $t == direct ]] && echo "- | - | -" || echo "${R_UTIL[$k|$t]} | ${R_CSW[$k|$t]} | ${R_RSS[$k|$t]}") | ${R_UPCPU[$k|$t]} |"
        done
    done
}

WRK_PARAMS="wrk -t$BENCH_THREADS -c$BENCH_CONNS -d$BENCH_DURATION --timeout $BENCH_WRK_TIMEOUT --latency (warm-up $BENCH_WARMUP before each run)"
MAIN=$(main_table)

if [[ ${#FAIL_MSGS[@]} -gt 0 ]]; then
    FAILED=1
    {
        echo
        echo "BENCHMARK FAILED — these numbers are not valid:"
        for m in "${FAIL_MSGS[@]}"; do echo "  - $m"; done
        echo
        echo "$MAIN"
        echo
        for t in $BENCH_TARGETS; do [[ -n ${END_INFO[$t]:-} ]] && echo "$t at end: ${END_INFO[$t]}"; done
        echo "raw wrk output and logs: $TMP"
    } >&2
    exit 1
fi

COMMIT=$(cd "$ROOT" && git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$ROOT" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    COMMIT+=" (+ uncommitted changes under src/ or Cargo.*)"
fi
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)

echo "$MAIN"
echo
[[ -n $GW_HWM ]] && echo "gateway max RSS (VmHWM): $GW_HWM kB"
for w in "${WARNINGS[@]}"; do echo "WARNING: $w"; done

mkdir -p "$(dirname "$BENCH_OUT")"
{
    echo "# Proxy benchmark: Portcullis vs nginx vs direct"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc --all) CPUs, $CPU_MODEL, Linux $(uname -r)"
    echo "- load average before/after: $LOAD_BEFORE / $LOAD_AFTER"
    echo "- gateway commit: $COMMIT"
    echo "- $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk", $2}')"
    echo "- load: \`$WRK_PARAMS\`, scripts in \`benches/wrk/\`"
    echo "- pinning: proxy under test on CPU $BENCH_PROXY_CPU; wrk and the upstream (nginx, 1 worker) on CPU $BENCH_LOAD_CPU"
    echo "- nginx proxy: 1 worker, proxy_http_version 1.1, upstream keepalive 64, JSON access log (\`${BENCH_NGINX_LOG_BUFFER:-unbuffered}\`)"
    echo "- gateway: defaults + access log on (file in a temp dir, stdout to /dev/null)"
    echo
    echo "$MAIN"
    echo
    echo "CPU µs/req = (utime+stime of the proxy process(es) over the measured run, from /proc/PID/stat) / requests wrk completed. For \`direct\` it is the upstream's."
    echo
    echo "## Details"
    echo
    details_table
    echo
    for t in $BENCH_TARGETS; do
        [[ $t == direct ]] && continue
        echo "- $t at start: ${START_INFO[$t]:-}"
        echo "- $t at end: ${END_INFO[$t]:-}"
    done
    [[ -n ${END_INFO[direct]:-} ]] && echo "- upstream at end: ${END_INFO[direct]}"
    for w in "${WARNINGS[@]}"; do echo "- WARNING: $w"; done
} > "$BENCH_OUT"
log "wrote $BENCH_OUT"
