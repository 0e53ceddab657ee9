# Sourced by the integration tests (after they set LURAY_BIN and LURAY_TMPDIR, and `out` and
# `err` for the output of L): TAP lines, running luray, finding our processes, free ports.

n=0
failures=0

ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}

# not_ok NAME [DETAIL...]: each detail line becomes a "# " comment.
not_ok() {
    n=$((n + 1))
    failures=$((failures + 1))
    echo "not ok $n - $1"
    shift
    local line
    for line in "$@"; do printf '%s\n' "$line" | sed 's/^/# /'; done
}

# check NAME COMMAND...: passes when COMMAND succeeds; shows the last output of L on failure.
check() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else not_ok "$name" "stdout: $(tail -c 800 "$out")" \
        "stderr: $(tail -c 800 "$err")"; fi
}

# L CMD...: runs luray with no input, its exit status in $rc and its output in $out and $err;
# at most L_TIMEOUT seconds (default 60).
L() {
    timeout -k 5 "${L_TIMEOUT:-60}" "$LURAY_BIN" "$@" >"$out" 2>"$err" </dev/null
    rc=$?
}

# The live processes of nodes of ours (by their session), ignoring zombies.
node_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(cut -d' ' -f3 "$p/stat" 2>/dev/null)" = Z ] && continue
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "_node --session $LURAY_TMPDIR/" &&
            echo "${p#/proc/}"
    done
}

# The live workers of our nodes (by the session in their environment).
worker_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(cut -d' ' -f3 "$p/stat" 2>/dev/null)" = Z ] && continue
        tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -q "^LURAY_SESSION=$LURAY_TMPDIR/" &&
            echo "${p#/proc/}"
    done
}

# free_port N prints a port P such that P .. P+N-1 take no connection now, chosen below the
# kernel's ephemeral range (32768 and up) so that outgoing connections of other processes cannot
# take them while a test runs.
free_port() {
    local count=${1:-1} p k busy
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        busy=
        for k in $(seq 0 $((count - 1))); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$((p + k))") 2>/dev/null; then
                busy=1
                break
            fi
        done
        [ -z "$busy" ] && { echo "$p"; return 0; }
    done
    echo 23456
}
