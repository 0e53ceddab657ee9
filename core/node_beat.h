/* The heartbeat thread of a node that joined a cluster: it sends the node's latest heartbeat to
 * the head every period on a socket of its own, so a node whose loop is busy for a while (a
 * large spill, a burst of messages) is not taken for dead; a node whose process died stops. */
#ifndef LURAY_CORE_NODE_BEAT_H
#define LURAY_CORE_NODE_BEAT_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"

typedef struct node_beat node_beat_t;

/* auth is shared with the loop (sealing only uses its key and an atomic counter). */
int node_beat_start(luray_auth_t *auth, const char *head_addr, uint64_t period_ms,
                    node_beat_t **out);
/* The frame to send from now on (copied); len 0 sends nothing (not registered). */
void node_beat_update(node_beat_t *b, const void *frame, size_t len);
void node_beat_stop(node_beat_t *b);

#endif
