/* Open-addressing hash map keyed by object id, linear probing, backward-shift deletion. */
#include "oidmap.h"

#include <stdlib.h>

#include "errors.h"

void luray_oidmap_init(luray_oidmap_t *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void luray_oidmap_close(luray_oidmap_t *m)
{
    free(m->slots);
    luray_oidmap_init(m);
}

void *luray_oidmap_get(const luray_oidmap_t *m, luray_oid_t key)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = luray_oid_hash(key) & mask;; i = (i + 1) & mask) {
        if (!m->slots[i].val)
            return NULL;
        if (luray_oid_eq(m->slots[i].key, key))
            return m->slots[i].val;
    }
}

static void insert_slot(luray_oidmap_slot_t *slots, size_t cap, luray_oid_t key, void *val)
{
    size_t mask = cap - 1;
    size_t i = luray_oid_hash(key) & mask;
    while (slots[i].val && !luray_oid_eq(slots[i].key, key))
        i = (i + 1) & mask;
    slots[i].key = key;
    slots[i].val = val;
}

static int grow(luray_oidmap_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    luray_oidmap_slot_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return LURAY_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].val)
            insert_slot(slots, cap, m->slots[i].key, m->slots[i].val);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int luray_oidmap_put(luray_oidmap_t *m, luray_oid_t key, void *val)
{
    if ((m->len + 1) * 4 > m->cap * 3) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    size_t mask = m->cap - 1;
    size_t i = luray_oid_hash(key) & mask;
    while (m->slots[i].val && !luray_oid_eq(m->slots[i].key, key))
        i = (i + 1) & mask;
    if (!m->slots[i].val)
        m->len++;
    m->slots[i].key = key;
    m->slots[i].val = val;
    return 0;
}

void *luray_oidmap_del(luray_oidmap_t *m, luray_oid_t key)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = luray_oid_hash(key) & mask;
    while (m->slots[i].val && !luray_oid_eq(m->slots[i].key, key))
        i = (i + 1) & mask;
    void *val = m->slots[i].val;
    if (!val)
        return NULL;
    m->len--;
    /* Backward shift: move later entries of the probe chain into the hole. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->slots[j].val; j = (j + 1) & mask) {
        size_t home = luray_oid_hash(m->slots[j].key) & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].val = NULL;
    return val;
}
