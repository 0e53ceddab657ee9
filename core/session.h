/* Local clusters on this machine: session directories under LURAY_TMPDIR (or /tmp/luray),
 * spawning and finding their node daemons, `luray stop`'s cleanup, and default node resources. */
#ifndef LURAY_CORE_SESSION_H
#define LURAY_CORE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "node.h"

#define LURAY_VERSION "0.1.0"
#define LURAY_DEFAULT_PORT 6380
#define LURAY_DEFAULT_HOST "127.0.0.1"
#define LURAY_SESSION_BASE_DEFAULT "/tmp/luray"
/* How long luray_session_spawn_node waits for the node to say it serves. */
#define LURAY_SESSION_SPAWN_TIMEOUT_MS 15000
/* How long luray_session_stop_all waits after SIGTERM before SIGKILL. */
#define LURAY_SESSION_STOP_TIMEOUT_MS 5000

/* What a node wrote into its session's node.json. */
typedef struct {
    pid_t pid;
    uint32_t node_id;
    char host[256];
    int port;
    char shm[128];
    uint64_t object_store_memory;
    double num_cpus;
} luray_session_node_t;

/* Writes the base directory (env LURAY_TMPDIR, else /tmp/luray) into out, creating it mode 0700.
 * Refuses (LURAY_EINVAL) a base owned by another user. */
int luray_session_base(char *out, size_t len);

/* Makes a new session directory base/session_<YYYYmmdd_HHMMSS>_<pid>[_N]/ with spill/ and logs/. */
int luray_session_create(char *dir_out, size_t len);

/* Starts a node daemon for opts->session_dir as `<exe> _node ...` and waits until it serves.
 * opts->exe NULL means this program. detach: a new session with stdio in DIR/logs/node.log, which
 * outlives the caller; else a child sharing the caller's stdout/stderr that gets SIGTERM when the
 * caller dies. On failure (the node exited, or did not answer in time) err says why. */
int luray_session_spawn_node(const luray_node_opts_t *opts, bool detach, pid_t *pid_out, char *err,
                             size_t errlen);

/* Ends the node pid: SIGTERM, up to timeout_ms, then SIGKILL (and then unlinks the shared memory
 * of dead luray processes); reaps it when it is our child. */
int luray_session_kill_node(pid_t pid, int timeout_ms);

/* Reads DIR/node.json. LURAY_ENOENT when there is none, LURAY_EPROTO when it does not parse. */
int luray_session_read_node(const char *dir, luray_session_node_t *out);

/* True when DIR has a node.json whose node process is alive (not a zombie, still a luray node). */
bool luray_session_alive(const char *dir, luray_session_node_t *node_out);

/* Points base/current at dir (a session directory in base). */
int luray_session_set_current(const char *dir);

/* Removes base/current when it names dir (a session that ends). */
int luray_session_clear_current(const char *dir);

/* Finds the session of a running cluster. address NULL, "" or "auto": base/current; "host:port":
 * the live session whose node.json has that port. LURAY_ENOENT (with err saying how to start one)
 * when none runs there, LURAY_EINVAL for an address that is not HOST:PORT. */
int luray_session_find(const char *address, char *dir_out, size_t len, char *err, size_t errlen);

/* `luray stop`: ends every live node of base (SIGTERM, then SIGKILL after 5 s) and the workers
 * left of them, removes the sessions of dead nodes, a dangling base/current, and the
 * /dev/shm/luray-<pid>-* segments of dead processes. *n_stopped counts the nodes ended. */
int luray_session_stop_all(int *n_stopped);

/* Removes dir and everything below it, not following symlinks. A missing dir is not an error. */
int luray_session_remove(const char *dir);
/* Unlinks /dev/shm/luray-<pid>-* segments of ours whose process is gone (a driver or node that
 * was killed outright could not remove its store). */
void luray_session_sweep_shm(void);

/* Default resources: the CPUs this process may use; for the store 30% of physical memory, at
 * most 8 GiB, at most 90% of the free space of /dev/shm, and at least 64 MiB. */
double luray_session_default_cpus(void);
uint64_t luray_session_default_store_memory(void);

/* Parses a size: bytes ("512000000"), or a number with a unit: kB/MB/GB/TB (powers of 1000),
 * KiB/MiB/GiB/TiB or K/M/G/T (powers of 1024), B; case-insensitive, fractions allowed ("1.5GB"). */
int luray_session_parse_size(const char *text, uint64_t *out);
/* Splits "host:port" (the last ':' divides, so "[::1]:6380" works; brackets dropped). */
int luray_session_parse_address(const char *address, char *host, size_t hostlen, int *port);

/* The host other machines reach a node bound to `host` at: env LURAY_NODE_IP, else `host`, else
 * (0.0.0.0: every interface) this machine's first address that is not loopback. */
void luray_session_advertised_host(const char *host, char *out, size_t len);

#endif
