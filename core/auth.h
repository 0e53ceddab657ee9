/* The cluster key and the authenticated envelope around every message that leaves a machine:
 * an AEAD tag over the whole frame (libsodium), with a per-sender counter so that a replayed or
 * reordered message is refused too. Messages are authenticated, not encrypted. The tag is
 * AES-256-GCM where the CPU has AES-NI and PCLMUL (twice as fast as the alternative; objects
 * between nodes go through it), else ChaCha20-Poly1305; the magic says which, every node checks
 * both, and env LURAY_AUTH=chacha20 makes a node seal with ChaCha20-Poly1305 for a cluster with
 * CPUs that lack AES-NI. Each algorithm uses its own key derived from the cluster key. */
#ifndef LURAY_CORE_AUTH_H
#define LURAY_CORE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define LURAY_KEY_BYTES 32
#define LURAY_AUTH_MAGIC 0x3141524cu     /* "LRA1": ChaCha20-Poly1305 */
#define LURAY_AUTH_MAGIC_GCM 0x3241524cu /* "LRA2": AES-256-GCM */
/* magic u32 | sender u32 | counter u64 | payload | tag[16] */
#define LURAY_AUTH_HEADER 16
#define LURAY_AUTH_TAG 16
#define LURAY_AUTH_OVERHEAD (LURAY_AUTH_HEADER + LURAY_AUTH_TAG)

/* Counters seen from a sender: the highest, and which of the LURAY_AUTH_WINDOW below it. A
 * node's bulk data travels on several connections beside its ordered one, so its messages may
 * arrive a little out of order; each is still taken at most once. */
#define LURAY_AUTH_WINDOW 1024
typedef struct {
    uint32_t sender;
    uint64_t last;
    uint64_t seen[LURAY_AUTH_WINDOW / 64]; /* bit i: counter last - i was taken */
} luray_auth_peer_t;

typedef struct {
    uint8_t key[LURAY_KEY_BYTES];     /* ChaCha20-Poly1305 */
    uint8_t key_gcm[LURAY_KEY_BYTES]; /* AES-256-GCM */
    int gcm;                          /* 1: this CPU can do AES-GCM; 2: and we seal with it */
    uint32_t sender;  /* our id in the envelopes we seal */
    uint64_t counter; /* next counter (atomic): starts at the wall clock in ns, so restarts never
                       * reuse one */
    luray_auth_peer_t *peers; /* last counter accepted from each sender (open addressing) */
    size_t cap, len;
    uint64_t rejected; /* envelopes that failed: bad tag, truncated, or replayed */
} luray_auth_t;

/* Makes a new random key and writes it, hex, to path with mode 0600 (replacing what was there). */
int luray_key_generate(const char *path, char *err, size_t errlen);
/* Reads a key file. Refuses one that others than its owner may read. */
int luray_key_load(const char *path, uint8_t key[LURAY_KEY_BYTES], char *err, size_t errlen);

/* sender 0 picks a random one (for short-lived clients). */
int luray_auth_init(luray_auth_t *a, const uint8_t key[LURAY_KEY_BYTES], uint32_t sender);
void luray_auth_close(luray_auth_t *a);

/* Seals payload into out, which holds len + LURAY_AUTH_OVERHEAD bytes. payload may already sit
 * at out + LURAY_AUTH_HEADER (sealing in place). */
void luray_auth_seal(luray_auth_t *a, const void *payload, size_t len, uint8_t *out);
/* Checks an envelope; on success points *payload into it and returns 0 with the sender's id.
 * Returns LURAY_EAUTH for anything that fails (counted in a->rejected). */
int luray_auth_open(luray_auth_t *a, const uint8_t *in, size_t len, const uint8_t **payload,
                    size_t *plen, uint32_t *sender);
/* Forgets a sender's counter (a node that restarted may start lower only if its clock went back;
 * a node declared dead is forgotten so its id can rejoin). */
void luray_auth_forget(luray_auth_t *a, uint32_t sender);

#endif
