#!/usr/bin/env bash
# Checks luray's CUDA backend on a machine with a GPU (an H100 or H200; the kernels are built for
# sm_90): builds luray with nvcc, runs the CUDA tests (every kernel against its CPU twin, nn and
# the Trainer on "cuda") and the nn CPU tests, then the MLP training benchmark on the GPU beside
# the CPU path. Prints one JSON line per result on stdout, progress on stderr, and exits 1 when
# anything failed. Takes a few minutes from a fresh copy of the repository.
#
#   scripts/gpu-check.sh
#
# Env: LURAY_BUILD (build folder, default build), JOBS (make's, default all cores),
# GPU_CHECK_SCALE (the benchmark's sample count multiplier, default 1), GPU_CHECK_MEMCHECK=1
# (also run the CUDA tests under compute-sanitizer, when it is installed; slow).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
build=${LURAY_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
bin=$build/bin/luray
jobs=${JOBS:-$(nproc 2>/dev/null || echo 4)}
failed=()

log() { echo "[gpu-check] $*" >&2; }

# A JSON string.
jstr() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/ }
    printf '"%s"' "$s"
}

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
export LURAY_TMPDIR=$tmp/session # a private session: never joins a cluster running here
unset LURAY_ADDRESS

# ---- the machine

nvcc=$(command -v /usr/local/cuda/bin/nvcc || command -v nvcc || true)
gpu=unknown
if command -v nvidia-smi >/dev/null 2>&1; then
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
        2>/dev/null | head -n 1)
    log "GPU: ${gpu:-none reported by nvidia-smi}"
else
    log "nvidia-smi not found"
fi
printf '{"name": "gpu_check_machine", "gpu": %s, "nvcc": %s, "cores": %s}\n' \
    "$(jstr "${gpu:-none}")" "$(jstr "${nvcc:-none}")" "$(nproc 2>/dev/null || echo 0)"
if [ -z "$nvcc" ]; then
    log "FAILED: nvcc not found (/usr/local/cuda/bin/nvcc, or on PATH): nothing to build for CUDA"
    exit 1
fi

# ---- build

log "== make -j$jobs (build folder ${build#"$root"/})"
t0=$SECONDS
if ! make -j"$jobs" ${LURAY_BUILD:+BUILD="$LURAY_BUILD"} >"$tmp/build.log" 2>&1; then
    tail -n 40 "$tmp/build.log" >&2
    log "FAILED: make"
    exit 1
fi
log "build took $((SECONDS - t0))s"
if [ ! -f "$build/lib/luray/plugins/nn_cuda.so" ]; then
    log "FAILED: make did not build $build/lib/luray/plugins/nn_cuda.so"
    exit 1
fi

# ---- tests

# run_test FILE [ENV...]: runs a Lua test, prints its TAP on stderr and one JSON line of counts.
run_test() {
    local file=$1 name
    shift
    name=$(basename "$file" .lua)
    log "== $file"
    local t0=$SECONDS rc
    (cd "$root" && env "$@" timeout -k 10 600 "$bin" run "$file") >"$tmp/$name.tap" 2>&1
    rc=$?
    sed -e 's/^/    /' "$tmp/$name.tap" >&2
    local ok skip nok
    ok=$(grep -cE '^ok ' "$tmp/$name.tap")
    skip=$(grep -E '^ok ' "$tmp/$name.tap" | grep -ciE '# *skip')
    nok=$(grep -cE '^not ok ' "$tmp/$name.tap")
    printf '{"name": %s, "passed": %d, "failed": %d, "skipped": %d, "exit": %d, "seconds": %d}\n' \
        "$(jstr "$name")" "$((ok - skip))" "$nok" "$skip" "$rc" "$((SECONDS - t0))"
    if [ "$rc" -ne 0 ] || [ "$nok" -gt 0 ]; then
        failed+=("$name")
        return 1
    fi
    if [ "$skip" -gt 0 ] && [ "$name" = test_nn_cuda ]; then
        log "FAILED: $name skipped cases on a machine that should have a GPU"
        failed+=("$name (skipped)")
        return 1
    fi
    return 0
}

# A kernel fault is reported at the call that made it, not at a later synchronisation.
run_test tests/lua/test_nn_cuda.lua CUDA_LAUNCH_BLOCKING=1
cuda_tap=$tmp/test_nn_cuda.tap
# The kernel-equality figure: the cases that compare kernels with their CPU twins.
eq_pass=$(grep -E '^ok [0-9]+ - .*match the CPU' "$cuda_tap" | grep -viE '# *skip' | grep -c .)
eq_fail=$(grep -cE '^not ok [0-9]+ - .*match the CPU' "$cuda_tap")
printf '{"name": "nn_cuda_kernels_equal_cpu_twins", "value": %s, "passed": %d, "failed": %d}\n' \
    "$([ "$eq_fail" -eq 0 ] && [ "$eq_pass" -gt 0 ] && echo true || echo false)" "$eq_pass" \
    "$eq_fail"
run_test tests/lua/test_nn_layers.lua
run_test tests/lua/test_nn_autograd.lua

if [ "${GPU_CHECK_MEMCHECK:-0}" = 1 ]; then
    sanitizer=$(command -v compute-sanitizer || command -v /usr/local/cuda/bin/compute-sanitizer \
        || true)
    if [ -n "$sanitizer" ]; then
        log "== compute-sanitizer memcheck of tests/lua/test_nn_cuda.lua"
        if "$sanitizer" --tool memcheck --error-exitcode 99 --target-processes all \
            "$bin" run tests/lua/test_nn_cuda.lua >"$tmp/memcheck.log" 2>&1; then
            echo '{"name": "nn_cuda_memcheck", "value": "clean"}'
        else
            grep -E 'ERROR SUMMARY|Invalid|out of bounds' "$tmp/memcheck.log" | head -n 20 >&2
            echo '{"name": "nn_cuda_memcheck", "value": "errors"}'
            failed+=(memcheck)
        fi
    else
        log "compute-sanitizer not installed: memcheck skipped"
    fi
fi

# ---- benchmark: the CPU path (2 BLAS threads, as defined) and the GPU, then every core

bench() {
    log "== scripts/bench/nn.lua ($*)"
    if ! env "$@" LURAY_BENCH_SCALE="${GPU_CHECK_SCALE:-1}" timeout -k 10 600 \
        "$bin" run scripts/bench/nn.lua 2> >(sed -e 's/^/    /' >&2) | grep -E '^\{' \
        | tee "$tmp/bench.json"; then
        failed+=("bench $*")
    elif ! grep -q '"name": "mlp_train_gpu_speedup"' "$tmp/bench.json"; then
        log "FAILED: the benchmark gave no GPU figure"
        failed+=("bench $* (no GPU figure)")
    fi
}
bench LURAY_NN_THREADS=2
cores=$(nproc 2>/dev/null || echo 2)
[ "$cores" -gt 2 ] && bench LURAY_NN_THREADS="$cores"

if [ ${#failed[@]} -gt 0 ]; then
    printf '{"name": "gpu_check", "value": "failed", "failed": %s}\n' "$(jstr "${failed[*]}")"
    log "FAILED: ${failed[*]}"
    exit 1
fi
echo '{"name": "gpu_check", "value": "passed"}'
log "done"
