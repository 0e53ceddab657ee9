/* Large copies split over threads. */
#include "copy.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define PARALLEL_MIN (32u * 1024 * 1024)
#define MAX_THREADS 4

typedef struct {
    uint8_t *dst;
    const uint8_t *src;
    size_t n;
} chunk_t;

static void *copy_chunk(void *arg)
{
    chunk_t *c = arg;
    memcpy(c->dst, c->src, c->n);
    return NULL;
}

void luray_copy(void *dst, const void *src, size_t n)
{
    long cpus = n >= PARALLEL_MIN ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    int k = cpus > MAX_THREADS ? MAX_THREADS : (int)(cpus > 1 ? cpus : 1);
    if (k == 1) {
        memcpy(dst, src, n);
        return;
    }
    chunk_t chunks[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    size_t per = (n / (size_t)k + 4095) & ~(size_t)4095; /* page-aligned pieces */
    int started = 0;
    for (int i = 0; i < k; i++) {
        size_t from = (size_t)i * per;
        chunks[i].dst = (uint8_t *)dst + (from < n ? from : n);
        chunks[i].src = (const uint8_t *)src + (from < n ? from : n);
        chunks[i].n = from >= n ? 0 : (n - from < per ? n - from : per);
    }
    for (int i = 1; i < k; i++) {
        if (pthread_create(&tids[i], NULL, copy_chunk, &chunks[i]) != 0) {
            memcpy(chunks[i].dst, chunks[i].src, chunks[i].n); /* no thread: copy here */
            chunks[i].n = 0;
            tids[i] = 0;
            continue;
        }
        started |= 1 << i;
    }
    memcpy(chunks[0].dst, chunks[0].src, chunks[0].n);
    for (int i = 1; i < k; i++)
        if (started & (1 << i))
            pthread_join(tids[i], NULL);
}
