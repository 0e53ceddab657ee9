# Sourced by the integration tests: free_port N prints a port P such that P .. P+N-1 take no
# connection now, chosen below the kernel's ephemeral range (32768 and up) so that outgoing
# connections of other processes cannot take them while a test runs.
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
