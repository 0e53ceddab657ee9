#!/usr/bin/env bash
# The `luray` REPL end to end: a script piped on stdin, then a real terminal driven through tmux
# (editing, multi-line input, printing, :help, Ctrl-C, :quit, history). Prints TAP.
# Checks are single-quoted strings run by eval; functions run through check and wait_for.
# shellcheck disable=SC2016,SC2034,SC2317
set -u
cd "$(dirname "$0")/../.." || exit 1
LURAY_BIN=${LURAY_BIN:-build/bin/luray}
case $LURAY_BIN in /*) ;; *) LURAY_BIN=$PWD/$LURAY_BIN ;; esac
if [ ! -x "$LURAY_BIN" ]; then
    echo "Bail out! no luray binary at $LURAY_BIN"
    exit 1
fi

n=0
nfailed=0
ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}
not_ok() {
    n=$((n + 1))
    nfailed=$((nfailed + 1))
    echo "not ok $n - $1"
    shift
    local line
    for line in "$@"; do
        printf '%s\n' "$line" | sed 's/^/# /'
    done
}
# check NAME COMMAND...: ok when the command succeeds.
check() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else not_ok "$name" "${detail:-}"; fi
    detail=''
}
detail=''

tmp=$(mktemp -d /tmp/luray-test-repl.XXXXXX) || exit 1
sock=luray-test-repl-$$
cleanup() {
    command -v tmux >/dev/null 2>&1 && tmux -L "$sock" kill-server 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- stdin is not a terminal: all of it is one script ----

# pipe SCRIPT: runs it through luray's stdin; sets out, err, rc.
pipe() {
    printf '%s' "$1" | timeout 120 "$LURAY_BIN" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    detail="exit status $rc; stdout: $out; stderr: $(head -c 2000 "$tmp/err")"
}

pipe $'x = 1 + 2\nprint(x)\n'
check "piped script runs and prints" test "$rc" -eq 0 -a "$out" = 3

pipe $'local function f(a,\n    b)\n  return a .. b\nend\nprint(f("x", "y"))\nprint(2 + 2)\n'
check "piped script may span lines; expressions print nothing by themselves" \
    test "$rc" -eq 0 -a "$out" = $'xy\n4'

pipe $'print(type(luray))\n'
check "the luray module is a global" test "$rc" -eq 0 -a "$out" = table

pipe $'x = = 2\n'
check "syntax error exits 1 with the message on stderr" \
    eval '[ "$rc" -eq 1 ] && [ -z "$out" ] && [[ $err == *"stdin:1:"*"near"* ]]'

pipe $'print("before")\nlocal function boom() error("kaboom") end\nboom()\nprint("after")\n'
check "runtime error exits 1 with a traceback on stderr" \
    eval '[ "$rc" -eq 1 ] && [ "$out" = before ] && [[ $err == *"stdin:2: kaboom"* ]] &&
          [[ $err == *"stack traceback:"* ]]'

# ---- a terminal, through tmux ----

if ! command -v tmux >/dev/null 2>&1; then
    n=$((n + 1))
    echo "ok $n # SKIP tmux not installed"
    echo "1..$n"
    exit "$((nfailed > 0))"
fi

hist=$tmp/history
pane() {
    tmux -L "$sock" capture-pane -p -J -S -2000 -t repl 2>/dev/null
}
prompts() {
    pane | grep -c '^luray>'
}
# Literal text (tmux would read "end" as the End key), then Enter.
send() {
    tmux -L "$sock" send-keys -t repl -l "$1"
    tmux -L "$sock" send-keys -t repl Enter
}
# wait_for SECONDS COMMAND...: polls until the command succeeds; gives up early if luray exited.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    while [ "$SECONDS" -lt "$deadline" ]; do
        "$@" && return 0
        pane | grep -q '^LURAY-EXITED' && { "$@"; return; }
        sleep 0.2
    done
    return 1
}
more_prompts_than() {
    [ "$(prompts)" -gt "$1" ]
}
# What the last chunk printed: the lines between the last two prompts, less continuation lines.
last_output() {
    pane | awk '/^luray>/ {p[++k] = NR} {l[NR] = $0}
        END {for (i = p[k - 1] + 1; i < p[k]; i++) if (l[i] !~ /^   \.\.>/) print l[i]}' |
        sed -e 's/[[:space:]]*$//'
}
# run_chunk SECONDS LINE...: types the lines, waits for the next prompt, sets out to what printed.
run_chunk() {
    local limit=$1 before
    shift
    before=$(prompts)
    local line
    for line in "$@"; do
        send "$line"
        sleep 0.1
    done
    wait_for "$limit" more_prompts_than "$before"
    out=$(last_output)
    detail=$(printf 'printed:\n%s\n--- screen:\n%s' "$out" "$(pane | grep -v '^$' | tail -n 15)")
}

tmux -L "$sock" new-session -d -s repl -x 200 -y 50 \
    "LURAY_TMPDIR='$tmp' LURAY_HISTORY='$hist' '$LURAY_BIN'; echo LURAY-EXITED \$?; sleep 600" || {
    not_ok "tmux session starts"
    echo "1..$n"
    exit 1
}
tmux -L "$sock" set-option -t repl history-limit 5000 >/dev/null

if wait_for 60 eval 'pane | grep -q "^luray>"'; then
    ok "interactive luray shows the prompt"
else
    not_ok "interactive luray shows the prompt" "$(pane | tail -n 20)"
fi

run_chunk 20 '1 + 1'
check "an expression prints its value" test "$out" = 2

run_chunk 20 'for i = 1, 2 do' 'print(i)' 'end'
check "multi-line input continues until the chunk is complete" test "$out" = $'1\n2'

run_chunk 20 '{a = 1, b = {2, 3}}'
check "a table prints readably" test "$out" = '{a = 1, b = {2, 3}}'

run_chunk 20 '"s", 2.0, nil, {name = "x"}'
# The terminal shows tabs as spaces; test_repl.c checks the tabs themselves.
check "several results print on one line" \
    eval '[[ $out =~ ^s[[:space:]]+2\.0[[:space:]]+nil[[:space:]]+\{name\ =\ \"x\"\}$ ]]'

run_chunk 20 ':help'
check ":help lists the commands" eval '[[ $out == *":help"* && $out == *":quit"* ]]'

run_chunk 20 'error("boom")'
check "an error prints and the REPL goes on" eval '[[ $out == *"boom"* ]]'

before=$(prompts)
send 'while true do end'
sleep 1
tmux -L "$sock" send-keys -t repl C-c
wait_for 15 more_prompts_than "$before"
out=$(last_output)
detail=$(pane | grep -v '^$' | tail -n 15)
check "Ctrl-C interrupts a running line" eval '[[ $out == *"interrupted"* ]]'

run_chunk 20 '2 + 3'
check "the REPL works after an interrupt" test "$out" = 5

run_chunk 60 'slow = luray.remote(function() luray.sleep(30) return 1 end)'
before=$(prompts)
send 'luray.get(slow:remote())'
sleep 2
tmux -L "$sock" send-keys -t repl C-c
wait_for 15 more_prompts_than "$before"
out=$(last_output)
detail=$(pane | grep -v '^$' | tail -n 15)
check "Ctrl-C interrupts a line blocked in luray.get" eval '[[ $out == *"interrupted"* ]]'

run_chunk 20 'luray.get(luray.put(6)) * 7'
check "the cluster still answers after the interrupted get" test "$out" = 42

tmux -L "$sock" send-keys -t repl -l 'this is not lua'
sleep 0.3
tmux -L "$sock" send-keys -t repl C-c
sleep 0.3
run_chunk 20 '40 + 2'
check "Ctrl-C at the prompt clears the line" test "$out" = 42

send ':quit'
wait_for 20 eval 'pane | grep -q "^LURAY-EXITED"'
detail=$(pane | grep -v '^$' | tail -n 10)
check ":quit leaves with status 0" eval 'pane | grep -qx "LURAY-EXITED 0"'

detail="history file: $(cat "$hist" 2>/dev/null || echo missing)"
check "the history file has the lines typed" \
    eval 'grep -qx "1 + 1" "$hist" && grep -qx "for i = 1, 2 do" "$hist" && grep -qx ":help" "$hist"'

# Ctrl-D on an empty line leaves too, and the history carries over to the next session.
tmux -L "$sock" kill-session -t repl 2>/dev/null
tmux -L "$sock" new-session -d -s repl -x 200 -y 50 \
    "LURAY_TMPDIR='$tmp' LURAY_HISTORY='$hist' '$LURAY_BIN'; echo LURAY-EXITED \$?; sleep 600"
wait_for 60 eval 'pane | grep -q "^luray>"'
tmux -L "$sock" send-keys -t repl Up
sleep 0.3
detail=$(pane | grep -v '^$' | tail -n 5)
check "history is loaded at start (Up recalls :quit)" eval 'pane | grep -q "^luray> :quit"'
tmux -L "$sock" send-keys -t repl C-u C-d
wait_for 20 eval 'pane | grep -q "^LURAY-EXITED"'
detail=$(pane | grep -v '^$' | tail -n 5)
check "Ctrl-D leaves with status 0" eval 'pane | grep -qx "LURAY-EXITED 0"'

echo "1..$n"
exit "$((nfailed > 0))"
