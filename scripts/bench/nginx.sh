#!/usr/bin/env bash
# The HTTP ceiling of this machine for the serve figures: nginx serving a small static JSON file
# on 127.0.0.1, measured with the serve group's wrk command (`wrk -t2 -c64 -d10s --latency
# --timeout 30s`: the long timeout keeps slow answers in the latency figures instead of dropping
# them as errors).
# Prints nginx_static_requests_per_s and nginx_static_p99_ms as JSON lines (system "nginx"),
# medians of LURAY_BENCH_RUNS runs after a warm-up. nginx runs from a private prefix, config and
# pid file in a temporary folder, and is stopped by its pid on every exit path.
# Env: LURAY_BENCH_RUNS (default 3), LURAY_BENCH_SCALE (scales the 10 s per run),
# LURAY_BENCH_NGINX_WORKERS (worker_processes, default auto: one per CPU, the machine's ceiling).
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
runs=${LURAY_BENCH_RUNS:-3}
[ "$runs" -ge 3 ] 2>/dev/null || runs=3
seconds=$(awk -v s="${LURAY_BENCH_SCALE:-1}" \
    'BEGIN { d = int(10 * s + 0.5); print (d < 1 ? 1 : d) }')
workers=${LURAY_BENCH_NGINX_WORKERS:-auto}

log() { echo "[bench] $*" >&2; }

nginx=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; })
if [ -z "$nginx" ]; then
    log "nginx: not installed (scripts/install-deps.sh bench installs nginx-light); skipped"
    exit 0
fi
if ! command -v wrk >/dev/null; then
    log "nginx: wrk is not installed (scripts/install-deps.sh bench installs it); skipped"
    exit 0
fi

tmp=$(mktemp -d) || exit 1
pid=
stop_nginx() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        pid=
    fi
}
trap 'stop_nginx; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

. "$root/tests/integration/lib.sh"
mkdir -p "$tmp/html" "$tmp/logs"
# nginx's workers run as an unprivileged user when it starts as root: they must reach the file.
chmod 755 "$tmp" "$tmp/html"
printf '{"ok": true}\n' > "$tmp/html/ok.json"

# Starts nginx on port $1 in the foreground of a background job; true when it answers there.
start_nginx() {
    local port=$1
    cat > "$tmp/nginx.conf" <<EOF
worker_processes $workers;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    keepalive_requests 1000000;
    default_type application/json;
    server {
        listen 127.0.0.1:$port;
        root $tmp/html;
    }
}
EOF
    "$nginx" -p "$tmp" -e "$tmp/logs/error.log" -c "$tmp/nginx.conf" -g 'daemon off;' &
    pid=$!
    local i
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; pid=; return 1; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    stop_nginx
    return 1
}

port=
for _ in 1 2 3 4 5; do
    p=$(free_port 1)
    if start_nginx "$p"; then
        port=$p
        break
    fi
done
if [ -z "$port" ]; then
    log "nginx: cannot start ($(tail -n 3 "$tmp/logs/error.log" 2>/dev/null))"
    exit 1
fi
url=http://127.0.0.1:$port/ok.json
body=$(exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /ok.json HTTP/1.0\r\n\r\n' >&3 && cat <&3)
case $body in
*'{"ok": true}'*) ;;
*) log "nginx: unexpected answer from $url: $(printf '%s' "$body" | head -c 300)"; exit 1 ;;
esac

# One wrk run: prints "requests_per_s p99_ms", or fails naming what went wrong.
wrk_run() {
    local secs=$1 out res
    out=$(wrk -t2 -c64 -d"${secs}s" --latency --timeout 30s "$url" 2>&1) ||
        { log "wrk failed: $out"; return 1; }
    res=$(printf '%s\n' "$out" | awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000
            if (v ~ /s$/) return v * 1000
            return -1
        }
        /^Requests\/sec:/ { rps = $2 }
        /^ +99%/ { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        /Socket errors:/ { gsub(",", ""); sock = $4 + $6 + $8 + $10 }
        END {
            if (rps == "" || p99 == "" || p99 < 0) { print "cannot read the output"; exit 1 }
            if (bad > 0 || sock > 0) {
                printf "%d non-2xx answers, %d socket errors\n", bad, sock
                exit 1
            }
            printf "%s %.4f\n", rps, p99
        }') || { log "nginx: wrk: $res"; printf '%s\n' "$out" >&2; return 1; }
    printf '%s\n' "$res"
}

median() {
    sort -g | awk '{ v[NR] = $1 }
        END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
joined() { paste -sd, - | sed 's/,/, /g'; }

log "nginx_static: warm-up ($workers worker process(es), port $port)"
wrk_run 2 >/dev/null || exit 1
rates=()
p99s=()
for i in $(seq "$runs"); do
    r=$(wrk_run "$seconds") || exit 1
    rates+=("${r% *}")
    p99s+=("${r#* }")
    log "nginx_static run $i: ${r% *} req/s, p99 ${r#* } ms"
done
rate=$(printf '%s\n' "${rates[@]}" | median)
p99=$(printf '%s\n' "${p99s[@]}" | median)
extra="\"system\": \"nginx\", \"wrk\": \"-t2 -c64 -d${seconds}s\", \"nginx_workers\": \"$workers\""
# emit NAME VALUE UNIT RUNS...: one JSON line.
emit() {
    local name=$1 value=$2 unit=$3
    shift 3
    printf '{"name": "%s", "value": %s, "unit": "%s", "runs": [%s], %s}\n' "$name" "$value" \
        "$unit" "$(printf '%s\n' "$@" | joined)" "$extra"
}
emit nginx_static_requests_per_s "$rate" req/s "${rates[@]}"
emit nginx_static_p99_ms "$p99" ms "${p99s[@]}"
