/* The cluster key file and the authenticated message envelope (see auth.h). */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <stdbool.h>

#include "buf.h"
#include "luray/errors.h"

static int init_sodium(void)
{
    return sodium_init() < 0 ? LURAY_EIO : 0;
}

int luray_key_generate(const char *path, char *err, size_t errlen)
{
    uint8_t key[LURAY_KEY_BYTES];
    char hex[LURAY_KEY_BYTES * 2 + 2];
    if (init_sodium() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return LURAY_EIO;
    }
    randombytes_buf(key, sizeof key);
    sodium_bin2hex(hex, sizeof hex - 1, key, sizeof key);
    sodium_memzero(key, sizeof key);
    strcat(hex, "\n");
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errlen, "token path too long: %s", path);
        return LURAY_EINVAL;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create token file %s: %s", tmp, strerror(errno));
        return LURAY_EIO;
    }
    size_t n = strlen(hex);
    int rc = (write(fd, hex, n) == (ssize_t)n && fsync(fd) == 0) ? 0 : LURAY_EIO;
    sodium_memzero(hex, sizeof hex);
    if (close(fd) != 0)
        rc = LURAY_EIO;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = LURAY_EIO;
    if (rc != 0) {
        snprintf(err, errlen, "cannot write token file %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

int luray_key_load(const char *path, uint8_t key[LURAY_KEY_BYTES], char *err, size_t errlen)
{
    if (init_sodium() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return LURAY_EIO;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read token file %s: %s", path, strerror(errno));
        return errno == ENOENT ? LURAY_ENOENT : LURAY_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
        close(fd);
        snprintf(err, errlen, "token file %s may be read by others (mode %03o); chmod 600 it",
                 path, (unsigned)(st.st_mode & 0777));
        return LURAY_EAUTH;
    }
    char hex[256];
    ssize_t n = read(fd, hex, sizeof hex - 1);
    close(fd);
    if (n < 0)
        n = 0;
    hex[n] = 0;
    size_t bin_len = 0;
    const char *end = NULL;
    int rc = sodium_hex2bin(key, LURAY_KEY_BYTES, hex, (size_t)n, " \r\n\t", &bin_len, &end);
    sodium_memzero(hex, sizeof hex);
    if (rc != 0 || bin_len != LURAY_KEY_BYTES || (end && *end && !strchr(" \r\n\t", *end))) {
        snprintf(err, errlen, "token file %s does not hold a %d-byte hex key", path,
                 LURAY_KEY_BYTES);
        return LURAY_EAUTH;
    }
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int luray_auth_init(luray_auth_t *a, const uint8_t key[LURAY_KEY_BYTES], uint32_t sender)
{
    memset(a, 0, sizeof *a);
    if (init_sodium() < 0)
        return LURAY_EIO;
    /* One subkey per algorithm, so the cluster key is never used by two of them. */
    crypto_generichash(a->key, LURAY_KEY_BYTES, (const uint8_t *)"luray chacha20-poly1305", 23,
                       key, LURAY_KEY_BYTES);
    crypto_generichash(a->key_gcm, LURAY_KEY_BYTES, (const uint8_t *)"luray aes-256-gcm", 17, key,
                       LURAY_KEY_BYTES);
    if (crypto_aead_aes256gcm_is_available()) {
        const char *pref = getenv("LURAY_AUTH");
        a->gcm = pref && strcmp(pref, "chacha20") == 0 ? 1 : 2;
    }
    while (sender == 0)
        sender = randombytes_random();
    a->sender = sender;
    a->counter = now_ns();
    return 0;
}

void luray_auth_close(luray_auth_t *a)
{
    sodium_memzero(a->key, sizeof a->key);
    sodium_memzero(a->key_gcm, sizeof a->key_gcm);
    free(a->peers);
    a->peers = NULL;
    a->cap = a->len = 0;
}

/* The nonce is the header's sender and counter: unique for a key as long as counters only grow.
 * The whole message is the AEAD's additional data; there is nothing to encrypt. */
static void tag_of(const luray_auth_t *a, bool gcm, const uint8_t *msg, size_t len,
                   uint8_t tag[LURAY_AUTH_TAG])
{
    unsigned long long taglen = 0;
    uint8_t none[1] = {0};
    if (gcm)
        crypto_aead_aes256gcm_encrypt_detached(none, tag, &taglen, none, 0, msg, len, NULL,
                                               msg + 4, a->key_gcm);
    else
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(none, tag, &taglen, none, 0, msg, len,
                                                           NULL, msg + 4, a->key);
}

void luray_auth_seal(luray_auth_t *a, const void *payload, size_t len, uint8_t *out)
{
    if (payload != out + LURAY_AUTH_HEADER)
        memmove(out + LURAY_AUTH_HEADER, payload, len);
    bool gcm = a->gcm == 2;
    luray_le_put32(out, gcm ? LURAY_AUTH_MAGIC_GCM : LURAY_AUTH_MAGIC);
    luray_le_put32(out + 4, a->sender);
    luray_le_put64(out + 8, __atomic_fetch_add(&a->counter, 1, __ATOMIC_RELAXED));
    tag_of(a, gcm, out, LURAY_AUTH_HEADER + len, out + LURAY_AUTH_HEADER + len);
}

static luray_auth_peer_t *peer_slot(luray_auth_t *a, uint32_t sender)
{
    if (a->len * 2 >= a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        luray_auth_peer_t *np = calloc(cap, sizeof *np);
        if (!np)
            return NULL;
        for (size_t i = 0; i < a->cap; i++) {
            if (!a->peers[i].sender)
                continue;
            size_t j = (a->peers[i].sender * 2654435761u) & (cap - 1);
            while (np[j].sender)
                j = (j + 1) & (cap - 1);
            np[j] = a->peers[i];
        }
        free(a->peers);
        a->peers = np;
        a->cap = cap;
    }
    size_t j = (sender * 2654435761u) & (a->cap - 1);
    while (a->peers[j].sender && a->peers[j].sender != sender)
        j = (j + 1) & (a->cap - 1);
    if (!a->peers[j].sender) {
        memset(&a->peers[j], 0, sizeof(a->peers[j]));
        a->peers[j].sender = sender;
        a->len++;
    }
    return &a->peers[j];
}

static bool window_bit(luray_auth_peer_t *p, uint64_t back, bool set)
{
    uint64_t mask = 1ull << (back % 64);
    bool was = p->seen[back / 64] & mask;
    if (set)
        p->seen[back / 64] |= mask;
    return was;
}

/* Takes a counter once: newer than any seen, or within the window and not seen yet. */
static bool replay_take(luray_auth_peer_t *p, uint64_t counter)
{
    if (counter > p->last) {
        uint64_t shift = counter - p->last;
        if (p->last == 0 || shift >= LURAY_AUTH_WINDOW) {
            memset(p->seen, 0, sizeof(p->seen));
        } else {
            /* Bit `back` moves to `back + shift`: a shift of the whole bitmap, a word at a time. */
            int words = LURAY_AUTH_WINDOW / 64, ws = (int)(shift / 64), bs = (int)(shift % 64);
            for (int i = words - 1; i >= 0; i--) {
                int src = i - ws;
                uint64_t v = src >= 0 ? p->seen[src] << bs : 0;
                if (bs && src - 1 >= 0)
                    v |= p->seen[src - 1] >> (64 - bs);
                p->seen[i] = v;
            }
        }
        p->last = counter;
        window_bit(p, 0, true);
        return true;
    }
    uint64_t back = p->last - counter;
    if (back >= LURAY_AUTH_WINDOW)
        return false;
    return !window_bit(p, back, true);
}

int luray_auth_open(luray_auth_t *a, const uint8_t *in, size_t len, const uint8_t **payload,
                    size_t *plen, uint32_t *sender)
{
    uint8_t tag[LURAY_AUTH_TAG];
    if (len < LURAY_AUTH_OVERHEAD || luray_le_get32(in + 4) == 0)
        goto bad;
    uint32_t magic = luray_le_get32(in);
    bool gcm = magic == LURAY_AUTH_MAGIC_GCM;
    if ((magic != LURAY_AUTH_MAGIC && !gcm) || (gcm && !a->gcm))
        goto bad;
    size_t body = len - LURAY_AUTH_TAG;
    tag_of(a, gcm, in, body, tag);
    if (sodium_memcmp(tag, in + body, LURAY_AUTH_TAG) != 0)
        goto bad;
    uint32_t from = luray_le_get32(in + 4);
    uint64_t counter = luray_le_get64(in + 8);
    luray_auth_peer_t *peer = peer_slot(a, from);
    if (!peer || !replay_take(peer, counter))
        goto bad;
    *payload = in + LURAY_AUTH_HEADER;
    *plen = body - LURAY_AUTH_HEADER;
    *sender = from;
    return 0;
bad:
    a->rejected++;
    return LURAY_EAUTH;
}

void luray_auth_forget(luray_auth_t *a, uint32_t sender)
{
    if (!a->cap)
        return;
    size_t j = (sender * 2654435761u) & (a->cap - 1);
    while (a->peers[j].sender && a->peers[j].sender != sender)
        j = (j + 1) & (a->cap - 1);
    if (a->peers[j].sender) {
        a->peers[j].last = 0;
        memset(a->peers[j].seen, 0, sizeof(a->peers[j].seen));
    }
}
