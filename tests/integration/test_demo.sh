#!/usr/bin/env bash
# `make demo`'s script end to end (TAP): scripts/demo.lua on its own embedded cluster generates a
# data set, prepares it with luray.data, trains an MLP and xgboost through the Trainer, compares
# them, serves the better one and asks it over HTTP; every stage must show in its output, the
# answers must be 200s (400 for the bad record), and nothing may be left running.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh
L_TIMEOUT=240
LURAY_BIN=${LURAY_BIN:-build/bin/luray}
case $LURAY_BIN in /*) ;; *) LURAY_BIN=$PWD/$LURAY_BIN ;; esac
unset LURAY_ADDRESS LURAY_TOKEN_FILE

LURAY_TMPDIR=$(mktemp -d /tmp/luray-demo.XXXXXX) || exit 1
export LURAY_TMPDIR
out=$LURAY_TMPDIR/out
err=$LURAY_TMPDIR/err
trap 'for p in $(worker_pids); do kill -9 "$p" 2>/dev/null; done; rm -rf "$LURAY_TMPDIR"' EXIT

L run scripts/demo.lua
check "the demo runs to its end and exits 0" \
    bash -c "[ $rc = 0 ] && grep -q '^demo finished in' '$out'"
check "data: the CSV is generated and prepared with a train/test split" \
    bash -c "grep -q '^== 1\\. Generate' '$out' && grep -Eq 'train [0-9]+ rows, test [0-9]+ rows' '$out'"
check "train: the MLP and xgboost both train through the Trainer and checkpoint" \
    bash -c "grep -q 'ckpt-nn/epoch_' '$out' && grep -q 'ckpt-xgb/round_' '$out'"
check "the two models are compared on the held-out split" \
    bash -c "grep -Eq '^   MLP \\(nn\\) +0\\.[0-9]+ +0\\.[0-9]+' '$out' && grep -q 'best by AUC' '$out'"
check "the better model is served and HEALTHY" bash -c "grep -Eq 'http://127\\.0\\.0\\.1:[0-9]+/score: HEALTHY' '$out'"
check "single and multi-customer requests get 200 with probabilities" \
    bash -c "[ \$(grep -- '-> 200 {' '$out' | grep -c '\"default_probability\":') -ge 4 ]"
check "a bad record gets a 400 naming the field" \
    bash -c "grep -q -- \"-> 400 {\\\"error\\\":\\\"customer 1: 'age'\" '$out'"
check "the burst is answered in full" \
    bash -c "grep -Eq 'a burst of ([0-9]+) requests: \\1 answered 200' '$out'"
check "serve shuts down" grep -q 'serve shut down' "$out"
left=$(worker_pids)
check "no worker of the demo is left" test -z "$left"
echo "1..$n"
[ "$failures" -eq 0 ]
