/* The tree and ring that xgboost's rabit tracker (python-package/xgboost/tracker.py of the 1.x
 * releases) builds: heap-ordered binary tree, a ring that walks the tree depth first so most ring
 * links are tree links too, then ranks renumbered in ring order. */
#include <stdlib.h>
#include <string.h>

#include "luray/errors.h"

#include "link_map.h"

/* Tree neighbours of rank r in the heap-ordered tree of n nodes: parent, then children. */
static int heap_neighbours(int r, int n, int *out)
{
    int k = 0, one = r + 1;
    if (one > 1)
        out[k++] = one / 2 - 1;
    if (one * 2 - 1 < n)
        out[k++] = one * 2 - 1;
    if (one * 2 < n)
        out[k++] = one * 2;
    return k;
}

/* Appends to order[*len] the ring segment that starts at rank r: r, then each child's segment,
 * the last child's reversed so the segment ends next to where it started. */
static void share_ring(int r, int n, int *order, int *len)
{
    int nb[XGB_TREE_MAX_LINKS], child[XGB_TREE_MAX_LINKS];
    int parent = (r + 1) / 2 - 1;
    int nn = heap_neighbours(r, n, nb), nc = 0;
    for (int i = 0; i < nn; i++) {
        if (nb[i] != parent)
            child[nc++] = nb[i];
    }
    order[(*len)++] = r;
    for (int i = 0; i < nc; i++) {
        int start = *len;
        share_ring(child[i], n, order, len);
        if (i == nc - 1) {
            for (int a = start, b = *len - 1; a < b; a++, b--) {
                int t = order[a];
                order[a] = order[b];
                order[b] = t;
            }
        }
    }
}

void xgb_link_map_close(xgb_link_map_t *m)
{
    free(m->parent);
    free(m->tree);
    free(m->ntree);
    free(m->prev);
    free(m->next);
    memset(m, 0, sizeof(*m));
}

int xgb_link_map_init(xgb_link_map_t *m, int n)
{
    memset(m, 0, sizeof(*m));
    if (n < 1)
        return LURAY_EINVAL;
    size_t un = (size_t)n;
    int *order = malloc(un * sizeof(int));
    int *relabel = malloc(un * sizeof(int));
    m->parent = malloc(un * sizeof(int));
    m->tree = malloc(un * XGB_TREE_MAX_LINKS * sizeof(int));
    m->ntree = malloc(un * sizeof(int));
    m->prev = malloc(un * sizeof(int));
    m->next = malloc(un * sizeof(int));
    if (!order || !relabel || !m->parent || !m->tree || !m->ntree || !m->prev || !m->next) {
        free(order);
        free(relabel);
        xgb_link_map_close(m);
        return LURAY_ENOMEM;
    }
    m->n = n;
    int len = 0;
    share_ring(0, n, order, &len);
    /* The ring visits order[0], order[1], ...: rank order[i] becomes rank i. */
    for (int i = 0; i < n; i++)
        relabel[order[i]] = i;
    for (int r = 0; r < n; r++) {
        int nb[XGB_TREE_MAX_LINKS];
        int nn = heap_neighbours(r, n, nb), nr = relabel[r];
        m->ntree[nr] = nn;
        for (int i = 0; i < nn; i++)
            m->tree[nr * XGB_TREE_MAX_LINKS + i] = relabel[nb[i]];
        m->parent[nr] = r == 0 ? -1 : relabel[(r + 1) / 2 - 1];
    }
    for (int i = 0; i < n; i++) {
        m->prev[i] = (i + n - 1) % n;
        m->next[i] = (i + 1) % n;
    }
    free(order);
    free(relabel);
    return 0;
}
