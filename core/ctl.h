/* The head's control channel: JSON requests and replies (job submit, status, logs...) over a
 * nanomsg REQ/REP pair on tcp port P+1, each sealed in the cluster key's envelope (auth.h). */
#ifndef LURAY_CORE_CTL_H
#define LURAY_CORE_CTL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "auth.h"

/* What an envelope (auth.h) carries, integers little-endian:
 *   request: u32 json_len | json | bytes
 *   reply:   u32 request's sender | u64 request's counter | u32 json_len | json | bytes
 * json is one object; a request's has "op". bytes travel raw beside the JSON rather than base64
 * inside it: a packed working dir (up to LURAY_PACK_DEFAULT_LIMIT) would grow by a third and be
 * copied three times on the way. The reply repeats the request's sender and counter so that a
 * client takes no reply but the one to its own request. */
#define LURAY_CTL_PORT_OFFSET 1
/* The largest request payload (JSON and bytes) a head accepts; larger ones get an error reply. */
#define LURAY_CTL_MAX_REQUEST (600u << 20)
/* A request sealed more than this before the head's clock reads it is refused, so that a
 * recorded request cannot be replayed to a head that restarted (and forgot its counters). */
#define LURAY_CTL_MAX_AGE_S 600

/* Raw bytes beside the JSON of a request and of its reply. */
typedef struct {
    const uint8_t *data; /* the request's bytes (NULL when none), valid during the handler */
    size_t len;
    uint8_t *reply_data; /* the handler may set these: malloc'd, freed by the server */
    size_t reply_len;
} luray_ctl_bytes_t;

/* Answers one authenticated request, which has a string "op". Returns the reply object (the
 * server frees it), or NULL for an op it does not know (the server replies with an error). */
typedef cJSON *(*luray_ctl_handler_fn)(void *ctx, const cJSON *req, luray_ctl_bytes_t *bytes);

typedef struct luray_ctl_server luray_ctl_server_t;

/* Binds addr ("tcp://HOST:PORT") and serves it on loop: each request whose envelope opens under
 * key goes to fn on the loop's thread. key is the cluster key as luray_key_load reads it from the
 * token file (not an luray_auth_t's key, which is derived from it). A request that fails
 * authentication (bad tag, truncated, replayed) is dropped without a reply; one that opens but is
 * older than LURAY_CTL_MAX_AGE_S, larger than LURAY_CTL_MAX_REQUEST, or not a JSON object with a
 * string "op" gets {"ok":false,"error":...} and never reaches fn. All of them count as
 * rejected. */
int luray_ctl_server_start(uv_loop_t *loop, const char *addr, const uint8_t key[LURAY_KEY_BYTES],
                           luray_ctl_handler_fn fn, void *ctx, luray_ctl_server_t **out,
                           char *err, size_t errlen);
/* Stops serving and closes the socket; the memory goes in the poll handle's close callback, so
 * the loop must run once more, and s must not be used after (nor stopped twice). NULL is a
 * no-op. May be called from inside fn: the reply to that request is still sent. */
void luray_ctl_server_stop(luray_ctl_server_t *s);
/* Requests dropped or refused so far (any thread may read it). */
uint64_t luray_ctl_server_rejected(const luray_ctl_server_t *s);

/* {"ok":false,"error":<formatted text>}, or NULL when out of memory. */
cJSON *luray_ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A client: one REQ socket and one sender identity for many calls (a log follower). */
typedef struct luray_ctl_client luray_ctl_client_t;

int luray_ctl_client_new(const char *addr, const uint8_t key[LURAY_KEY_BYTES],
                         luray_ctl_client_t **out, char *err, size_t errlen);
void luray_ctl_client_free(luray_ctl_client_t *c);
/* Sends req (and data/len raw bytes, may be NULL/0) and waits up to timeout_ms for the reply:
 * *reply is the reply object (cJSON_Delete it); with rdata non-NULL, *rdata and *rlen are its raw
 * bytes (malloc'd, NULL/0 when none). The reply may be {"ok":false,...}: that is still 0.
 * LURAY_ETIMEDOUT with err "no luray head answers at HOST:PORT within N s ..." when nothing
 * answers (no head, or one with another key); LURAY_ETOOBIG for a request over
 * LURAY_CTL_MAX_REQUEST; LURAY_EPROTO for a reply that does not parse. */
int luray_ctl_client_call(luray_ctl_client_t *c, const cJSON *req, const uint8_t *data, size_t len,
                          cJSON **reply, uint8_t **rdata, size_t *rlen, int timeout_ms, char *err,
                          size_t errlen);
/* One request without bytes on a client of its own. */
int luray_ctl_request(const char *addr, const uint8_t key[LURAY_KEY_BYTES], const cJSON *req,
                      cJSON **reply, int timeout_ms, char *err, size_t errlen);

/* For command line tools: the head's control address (tcp://HOST:PORT+1) and its key file.
 * The cluster: address ("HOST:PORT"), else env LURAY_ADDRESS, else (or for "auto") the head of
 * this machine's current session ($LURAY_TMPDIR/current). The key: token_file, else env
 * LURAY_TOKEN_FILE, else $LURAY_TMPDIR/cluster-<PORT>/token, which must exist. err says what is
 * missing and what to do. */
int luray_ctl_resolve(const char *address, const char *token_file, char *ctl_addr,
                      size_t ctl_len, char *token_path, size_t token_len, char *err,
                      size_t errlen);

#endif
