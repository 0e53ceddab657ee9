#!/usr/bin/env bash
# Runs every luray test (C unit tests, Lua tests, integration scripts, fuzz targets), one line per
# file, then "N passed, N failed". `make test` calls it with LURAY_BUILD and SANITIZE set.
# Arguments, if any, keep only the files whose path contains one of them: tests/run.sh repl tasks
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
BUILD=${LURAY_BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SANITIZE=${SANITIZE:-0}
export LURAY_BIN=$BUILD/bin/luray

if [ "$SANITIZE" = 1 ]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    export LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp:print_suppressions=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

UNIT_TIMEOUT=${UNIT_TIMEOUT:-120}
LUA_TIMEOUT=${LUA_TIMEOUT:-120}
INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-300}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}

tmp=$(mktemp -d /tmp/luray-tests.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
# Tests never touch the user's REPL history.
export LURAY_HISTORY=$tmp/history
passed=0
failed=0
skipped=0

if [ -t 1 ]; then
    red=$'\e[31m' green=$'\e[32m' yellow=$'\e[33m' plain=$'\e[0m'
else
    red='' green='' yellow='' plain=''
fi

FILTERS=("$@")
selected() {
    [ ${#FILTERS[@]} -eq 0 ] && return 0
    local f
    for f in "${FILTERS[@]}"; do
        case $1 in *"$f"*) return 0 ;; esac
    done
    return 1
}

# The processes running our binary, to find the ones a test leaves behind.
luray_pids() {
    local p exe
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        [ "$exe" = "$LURAY_BIN" ] && echo "${p#/proc/}"
    done | sort
}

shm_names() {
    local f
    for f in /dev/shm/luray-*; do
        [ -e "$f" ] && echo "${f#/dev/shm/}"
    done | sort
}

# Indented lines of a log, at most $2 of them.
show_lines() {
    sed -e 's/^/    /' | head -n "$1"
}

show_tail() {
    if [ -s "$1" ]; then
        echo "    --- last lines of output:"
        tail -n 25 "$1" | show_lines 25
    else
        echo "    (no output)"
    fi
}

# The failing TAP lines of a log with the comment lines that follow each.
failing_lines() {
    awk '/^not ok/ && !/# *TODO/ {show = 1; print; next}
         /^#/ && show {print; next}
         {show = 0}' "$1"
}

fail_line() {
    echo "${red}FAIL${plain} $1${2:+ ($2)}"
}

# run_tap NAME SECONDS COMMAND...: runs a program printing TAP and counts its cases. A program
# that exits non-zero without a failing case, times out, or prints no cases counts as one failure.
run_tap() {
    local name=$1 limit=$2
    shift 2
    local log=$tmp/log
    # The group's redirection also silences bash's own "Aborted" notice for a crashed program.
    { timeout -k 10 "$limit" "$@" >"$log" 2>&1 </dev/null; } 2>/dev/null
    local rc=$?
    local ok skip nok todo plan ran extra=0 why=''
    ok=$(grep -cE '^ok( |$)' "$log")
    skip=$(grep -E '^ok( |$)' "$log" | grep -ciE '# *skip')
    nok=$(grep -E '^not ok( |$)' "$log" | grep -viEc '# *todo')
    todo=$(grep -E '^not ok( |$)' "$log" | grep -ciE '# *todo')
    plan=$(grep -oE '^1\.\.[0-9]+' "$log" | head -n 1 | cut -c4-)
    ran=$((ok + nok + todo))
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        extra=1
        why="timed out after ${limit}s"
    elif [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then
        extra=1
        if [ "$rc" -gt 128 ]; then
            why="killed by signal $((rc - 128))"
        else
            why="exited with status $rc"
        fi
    elif [ -n "$plan" ] && [ "$ran" -lt "$plan" ]; then
        extra=$((plan - ran))
        why="planned $plan, ran $ran"
    elif [ "$ran" -eq 0 ] && [ "$plan" != 0 ]; then
        extra=1
        why="printed no test results"
    fi
    passed=$((passed + ok - skip))
    skipped=$((skipped + skip + todo))
    failed=$((failed + nok + extra))
    local counts="$((ok - skip)) ok"
    [ "$skip" -gt 0 ] || [ "$todo" -gt 0 ] && counts="$counts, $((skip + todo)) skipped"
    if [ "$nok" -eq 0 ] && [ "$extra" -eq 0 ]; then
        echo "${green}PASS${plain} $name ($counts)"
        return 0
    fi
    [ "$nok" -gt 0 ] && counts="$counts, $nok failed"
    fail_line "$name" "$counts${why:+; $why}"
    if [ "$nok" -gt 0 ]; then
        failing_lines "$log" | show_lines 40
    fi
    if [ "$extra" -gt 0 ]; then
        show_tail "$log"
    fi
    return 1
}

shm_before=$tmp/shm.before
pids_before=$tmp/pids.before
shm_names >"$shm_before"
luray_pids >"$pids_before"

# C unit tests (cmocka prints TAP when asked).
found=0
for t in "$BUILD"/tests/test_*; do
    { [ -f "$t" ] && [ -x "$t" ]; } || continue
    found=1
    selected "$t" || continue
    CMOCKA_MESSAGE_OUTPUT=TAP run_tap "${t#"$ROOT"/}" "$UNIT_TIMEOUT" "$t"
done
[ "$found" = 1 ] || echo "${yellow}note${plain}: no unit test binaries in ${BUILD#"$ROOT"/}/tests (run 'make unit')"

# Lua tests, run by the real binary.
for t in tests/lua/test_*.lua; do
    [ -f "$t" ] || continue
    selected "$t" || continue
    if [ ! -x "$LURAY_BIN" ]; then
        fail_line "$t" "no binary at $LURAY_BIN"
        failed=$((failed + 1))
        continue
    fi
    run_tap "$t" "$LUA_TIMEOUT" "$LURAY_BIN" run "$t"
done

# Integration scripts: real binaries and daemons; they print TAP.
for t in tests/integration/test_*.sh; do
    [ -f "$t" ] || continue
    selected "$t" || continue
    run_tap "$t" "$INTEGRATION_TIMEOUT" bash "$t"
done

# Fuzz targets: a short bounded run each; one test per target, passing when libFuzzer exits 0.
fuzz_src=()
for f in tests/fuzz/fuzz_*.c; do
    [ -f "$f" ] && selected "$f" && fuzz_src+=("$f")
done
if [ ${#fuzz_src[@]} -gt 0 ]; then
    if ! command -v clang >/dev/null 2>&1; then
        echo "${yellow}SKIP${plain} fuzz targets (clang is not installed)"
        skipped=$((skipped + ${#fuzz_src[@]}))
    elif ! make --no-print-directory fuzz BUILD="$BUILD" >"$tmp/fuzz-build.log" 2>&1; then
        fail_line "tests/fuzz" "make fuzz failed"
        tail -n 25 "$tmp/fuzz-build.log" | show_lines 25
        failed=$((failed + ${#fuzz_src[@]}))
    else
        for f in "${fuzz_src[@]}"; do
            name=$(basename "$f" .c)
            corpus=$tmp/corpus-$name # new inputs go here, never into the repo's seeds
            mkdir -p "$corpus"
            args=("$corpus")
            [ -d "tests/fuzz/corpus/$name" ] && args+=("tests/fuzz/corpus/$name")
            { timeout -k 10 $((FUZZ_SECONDS + 110)) "$BUILD/fuzz/$name" \
                -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 "${args[@]}" \
                >"$tmp/log" 2>&1 </dev/null; } 2>/dev/null
            rc=$?
            if [ "$rc" -eq 0 ]; then
                runs=$(grep -oE '^Done [0-9]+ runs' "$tmp/log" | grep -oE '[0-9]+')
                echo "${green}PASS${plain} $f (${runs:-?} runs in ${FUZZ_SECONDS}s)"
                passed=$((passed + 1))
            else
                fail_line "$f" "fuzzer exited with status $rc"
                grep -E 'ERROR|SUMMARY|Test unit written' "$tmp/log" | show_lines 10
                show_tail "$tmp/log"
                failed=$((failed + 1))
            fi
        done
    fi
fi

# Nothing a test started may outlive the run: processes of our binary, shared memory.
left=()
for _ in 1 2 3 4 5 6; do
    mapfile -t left < <(luray_pids | comm -13 "$pids_before" -)
    [ ${#left[@]} -eq 0 ] && break
    sleep 0.5
done
if [ ${#left[@]} -gt 0 ]; then
    fail_line "left processes behind" "${#left[@]}"
    for p in "${left[@]}"; do
        echo "    $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
    done
    for p in "${left[@]}"; do kill "$p" 2>/dev/null; done
    failed=$((failed + 1))
fi
mapfile -t shm_left < <(shm_names | comm -13 "$shm_before" -)
if [ ${#shm_left[@]} -gt 0 ]; then
    fail_line "left shared memory behind" "${#shm_left[@]} in /dev/shm"
    printf '%s\n' "${shm_left[@]}" | show_lines 10
    failed=$((failed + 1))
fi

[ "$skipped" -gt 0 ] && echo "($skipped skipped)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
