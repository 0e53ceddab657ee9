/* The links a rabit tracker gives its workers: a binary tree over the ranks and a ring that
 * follows the tree, relabelled so the ring visits ranks 0, 1, ..., n-1 in order. */
#ifndef LURAY_XGB_LINK_MAP_H
#define LURAY_XGB_LINK_MAP_H

#define XGB_TREE_MAX_LINKS 3 /* a parent and two children */

typedef struct {
    int n;
    int *parent;   /* n entries; -1 for the root */
    int *tree;     /* n * XGB_TREE_MAX_LINKS tree neighbours, ntree[r] of them used for rank r */
    int *ntree;
    int *prev;     /* ring neighbours */
    int *next;
} xgb_link_map_t;

/* Fills m for n >= 1 workers; 0 or LURAY_ENOMEM / LURAY_EINVAL. */
int xgb_link_map_init(xgb_link_map_t *m, int n);
void xgb_link_map_close(xgb_link_map_t *m);

#endif
