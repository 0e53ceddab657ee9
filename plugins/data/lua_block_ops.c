/* Block methods that reorder or regroup rows: sort, hash/random/bounds partitions, shuffle,
 * sample, group_aggregate and group_split, and C.group_combine. The kernels are plain C
 * (block_sort.c, block_part.c, block_group.c); C memory is only held between Lua calls that
 * cannot raise. */
#include "lua_block.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "block_group.h"
#include "block_part.h"
#include "block_sort.h"
#include "dcol_ops.h"

#define MAX_PARTS (1 << 24)

/* Checks that every key column can be sorted and grouped. */
static void check_key_types(lua_State *L, const data_block_t *b, const int *ki, int nk,
                            const char *what)
{
    for (int k = 0; k < nk; k++)
        if (!dsort_supported(b->cols[ki[k]]->type))
            luaL_error(L, "%s: column '%s' is a %s; keys must be int64, float64, bool or string",
                       what, b->names[ki[k]], dcol_type_name(b->cols[ki[k]]->type));
}

/* The key columns b->cols[ki[0..nk)], in scratch memory on the stack. */
static const dcol_t **key_columns(lua_State *L, const data_block_t *b, const int *ki, int nk)
{
    const dcol_t **keys = data_scratch(L, (size_t)nk * sizeof(*keys));
    for (int k = 0; k < nk; k++)
        keys[k] = b->cols[ki[k]];
    return keys;
}

static uint32_t check_nparts(lua_State *L, int arg, const char *what)
{
    lua_Integer n = luaL_checkinteger(L, arg);
    if (n < 1 || n > MAX_PARTS)
        luaL_error(L, "%s: %I parts (1 to %d allowed)", what, n, MAX_PARTS);
    return (uint32_t)n;
}

/* Splits the Block at 1 by part[] (row i goes to part[i]): pushes the list of nparts Blocks. The
 * new Columns are made first (kept in a table) and filled after, so raising never leaks. */
static void split_by_part(lua_State *L, const data_block_t *b, const uint32_t *part,
                          uint32_t nparts)
{
    int ncols = b->ncols;
    size_t ncells = (size_t)nparts * (size_t)ncols;
    int64_t *start = data_scratch(L, ((size_t)nparts + 1) * sizeof(*start));
    dpart_count(part, b->nrows, nparts, start);
    /* Column k of part p is cells[k * nparts + p]. */
    dcol_t **cells = data_scratch(L, ncells * sizeof(*cells));
    lua_createtable(L, (int)(ncells < INT32_MAX ? ncells : INT32_MAX), 0);
    int holder = lua_gettop(L);
    for (size_t c = 0; c < ncells; c++) {
        data_column_t *col = data_column_push(L);
        dcol_free(&col->c);
        cells[c] = &col->c;
        lua_rawseti(L, holder, (lua_Integer)c + 1);
    }
    for (int k = 0; k < ncols; k++)
        if (dpart_scatter(b->cols[k], part, start, nparts, cells + (size_t)k * nparts) != 0)
            luaL_error(L, "partition: out of memory");
    data_account(L, cells, ncells);
    luaL_checkstack(L, ncols + 8, "partition");
    lua_createtable(L, (int)nparts, 0);
    for (uint32_t p = 0; p < nparts; p++) {
        for (int k = 0; k < ncols; k++)
            lua_rawgeti(L, holder, (lua_Integer)k * nparts + p + 1);
        data_block_push_columns(L, ncols, (const char *const *)b->names);
        lua_rawseti(L, -2, (lua_Integer)p + 1);
    }
}

/* b:sort(keys, descending) */
static int l_sort(lua_State *L)
{
    lua_settop(L, 3);
    data_block_t *b = data_block_check(L, 1);
    int nk;
    int *ki = data_block_check_keys(L, 2, b, "sort", &nk);
    if (nk == 0)
        return luaL_error(L, "sort: no key columns given");
    check_key_types(L, b, ki, nk, "sort");
    int desc_type = lua_type(L, 3);
    if (desc_type != LUA_TNONE && desc_type != LUA_TNIL && desc_type != LUA_TBOOLEAN &&
        desc_type != LUA_TTABLE)
        return luaL_error(L, "sort: descending must be a boolean or a list of booleans");
    dsort_key_t *keys = data_scratch(L, (size_t)nk * sizeof(*keys));
    for (int k = 0; k < nk; k++) {
        keys[k].col = b->cols[ki[k]];
        if (desc_type == LUA_TTABLE) {
            lua_rawgeti(L, 3, k + 1);
            keys[k].descending = lua_toboolean(L, -1);
            lua_pop(L, 1);
        } else {
            keys[k].descending = lua_toboolean(L, 3);
        }
    }
    int64_t *idx = data_scratch(L, (size_t)b->nrows * sizeof(*idx));
    if (dsort_argsort(keys, nk, b->nrows, idx) != 0)
        return luaL_error(L, "sort: out of memory");
    data_block_push_take(L, 1, idx, b->nrows);
    return 1;
}

/* b:partition_hash(keys, n) */
static int l_partition_hash(lua_State *L)
{
    lua_settop(L, 3);
    data_block_t *b = data_block_check(L, 1);
    int nk;
    int *ki = data_block_check_keys(L, 2, b, "partition_hash", &nk);
    if (nk == 0)
        return luaL_error(L, "partition_hash: no key columns given");
    uint32_t n = check_nparts(L, 3, "partition_hash");
    const dcol_t **keys = key_columns(L, b, ki, nk);
    uint32_t *part = data_scratch(L, (size_t)b->nrows * sizeof(*part));
    dpart_hash(keys, nk, b->nrows, n, part);
    split_by_part(L, b, part, n);
    return 1;
}

/* b:partition_random(n, seed) */
static int l_partition_random(lua_State *L)
{
    lua_settop(L, 3);
    data_block_t *b = data_block_check(L, 1);
    uint32_t n = check_nparts(L, 2, "partition_random");
    uint64_t seed = data_check_seed(L, 3);
    uint32_t *part = data_scratch(L, (size_t)b->nrows * sizeof(*part));
    dpart_random(b->nrows, n, seed, part);
    split_by_part(L, b, part, n);
    return 1;
}

/* Makes a string column of the bounds list at arg in scratch memory. */
static void string_bounds(lua_State *L, int arg, lua_Integer nb, dcol_t *bd)
{
    size_t total = 0;
    for (lua_Integer j = 1; j <= nb; j++) {
        if (lua_rawgeti(L, arg, j) != LUA_TSTRING)
            luaL_error(L, "partition_bounds: bound %I is a %s, expected a string (the key "
                       "column is a string)", j, luaL_typename(L, -1));
        total += lua_rawlen(L, -1);
        lua_pop(L, 1);
    }
    bd->type = DCOL_STRING;
    bd->offsets = data_scratch(L, (size_t)(nb + 1) * sizeof(int64_t));
    bd->data = data_scratch(L, total);
    bd->nbytes = total;
    bd->offsets[0] = 0;
    for (lua_Integer j = 1; j <= nb; j++) {
        size_t len;
        lua_rawgeti(L, arg, j);
        const char *s = lua_tolstring(L, -1, &len);
        memcpy((char *)bd->data + bd->offsets[j - 1], s, len);
        bd->offsets[j] = bd->offsets[j - 1] + (int64_t)len;
        lua_pop(L, 1);
    }
}

/* Makes an int64 (integer bounds on an integer key) or float64 column of the bounds. */
static void number_bounds(lua_State *L, int arg, lua_Integer nb, dcol_type_t key, dcol_t *bd)
{
    bool ints = key != DCOL_FLOAT64;
    for (lua_Integer j = 1; j <= nb; j++) {
        int t = lua_rawgeti(L, arg, j);
        if (t != LUA_TNUMBER)
            luaL_error(L, "partition_bounds: bound %I is a %s, expected a number (the key "
                       "column is %s)", j, luaL_typename(L, -1), dcol_type_name(key));
        if (isnan(lua_tonumber(L, -1)))
            luaL_error(L, "partition_bounds: bound %I is NaN", j);
        ints = ints && lua_isinteger(L, -1);
        lua_pop(L, 1);
    }
    bd->type = ints ? DCOL_INT64 : DCOL_FLOAT64;
    bd->data = data_scratch(L, (size_t)nb * 8);
    bd->nbytes = (size_t)nb * 8;
    for (lua_Integer j = 1; j <= nb; j++) {
        lua_rawgeti(L, arg, j);
        if (ints)
            ((int64_t *)bd->data)[j - 1] = (int64_t)lua_tointeger(L, -1);
        else
            ((double *)bd->data)[j - 1] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
}

/* b:partition_bounds(key, bounds, descending) -> #bounds + 1 Blocks */
static int l_partition_bounds(lua_State *L)
{
    lua_settop(L, 4);
    data_block_t *b = data_block_check(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int k = data_block_find(b, name);
    if (k < 0)
        return data_block_no_column(L, b, "partition_bounds", name);
    luaL_checktype(L, 3, LUA_TTABLE);
    bool desc = lua_toboolean(L, 4);
    const dcol_t *key = b->cols[k];
    if (!dsort_supported(key->type))
        return luaL_error(L, "partition_bounds: column '%s' is a %s; keys must be int64, "
                          "float64, bool or string", name, dcol_type_name(key->type));
    lua_Integer nb = (lua_Integer)lua_rawlen(L, 3);
    if (nb + 1 > MAX_PARTS)
        return luaL_error(L, "partition_bounds: %I bounds is too many", nb);
    dcol_t bd;
    memset(&bd, 0, sizeof(bd));
    bd.len = nb;
    if (key->type == DCOL_STRING)
        string_bounds(L, 3, nb, &bd);
    else
        number_bounds(L, 3, nb, key->type, &bd);
    for (int64_t j = 1; j < nb; j++)
        if (dcol_compare_rows(&bd, j - 1, &bd, j) > 0)
            return luaL_error(L, "partition_bounds: bounds must be sorted ascending (bound "
                              "%I is less than bound %I)", (lua_Integer)(j + 1), (lua_Integer)j);
    uint32_t *part = data_scratch(L, (size_t)b->nrows * sizeof(*part));
    if (dpart_bounds(key, &bd, desc, part) != 0)
        return luaL_error(L, "partition_bounds: bounds do not match column '%s'", name);
    split_by_part(L, b, part, (uint32_t)nb + 1);
    return 1;
}

/* b:shuffle(seed) */
static int l_shuffle(lua_State *L)
{
    lua_settop(L, 2);
    data_block_t *b = data_block_check(L, 1);
    uint64_t seed = data_check_seed(L, 2);
    int64_t *idx = data_scratch(L, (size_t)b->nrows * sizeof(*idx));
    dpart_shuffle(idx, b->nrows, seed);
    data_block_push_take(L, 1, idx, b->nrows);
    return 1;
}

/* b:sample(key, k, seed) -> list of up to k values of column key, in row order */
static int l_sample(lua_State *L)
{
    lua_settop(L, 4);
    data_block_t *b = data_block_check(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int c = data_block_find(b, name);
    if (c < 0)
        return data_block_no_column(L, b, "sample", name);
    lua_Integer k = luaL_checkinteger(L, 3);
    luaL_argcheck(L, k >= 0, 3, "sample size must be >= 0");
    uint64_t seed = data_check_seed(L, 4);
    int64_t want = k < b->nrows ? k : b->nrows, got;
    int64_t *rows = data_scratch(L, (size_t)want * sizeof(*rows));
    if (dpart_sample(b->nrows, want, seed, rows, &got) != 0)
        return luaL_error(L, "sample: out of memory");
    data_block_push_column(L, 1, c);
    int col_idx = lua_gettop(L);
    lua_createtable(L, (int)got, 0);
    for (int64_t j = 0; j < got; j++) {
        data_push_cell(L, b->cols[c], rows[j], col_idx);
        lua_rawseti(L, -2, j + 1);
    }
    return 1;
}

/* ---- group-by ---- */

typedef struct {
    dagg_op_t op;
    const char *col;  /* NULL for count */
    dagg_layout_t lay; /* state columns */
    const char *out;  /* "mean(x)" */
} aggspec_t;

/* Field `name` of the agg table at top, or its list entry i. Leaves it on the stack. */
static int agg_field(lua_State *L, const char *name, int i)
{
    if (lua_getfield(L, -1, name) != LUA_TNIL)
        return lua_type(L, -1);
    lua_pop(L, 1);
    return lua_rawgeti(L, -1, i);
}

/* Reads the aggs list at arg. With a block, resolves each column and its state layout; the
 * strings are kept alive in a table it pushes (then the scratch array). */
static aggspec_t *check_aggs(lua_State *L, int arg, const data_block_t *b, const char *what,
                             int *n)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    int na = (int)lua_rawlen(L, arg);
    lua_newtable(L);
    int keep = lua_gettop(L);
    aggspec_t *a = data_scratch(L, (size_t)na * sizeof(*a));
    for (int i = 0; i < na; i++) {
        if (lua_rawgeti(L, arg, i + 1) != LUA_TTABLE)
            luaL_error(L, "%s: aggregation %d is a %s, expected {op, col}", what, i + 1,
                       luaL_typename(L, -1));
        if (agg_field(L, "op", 1) != LUA_TSTRING)
            luaL_error(L, "%s: aggregation %d has no op name", what, i + 1);
        if (dagg_op_parse(lua_tostring(L, -1), &a[i].op) != 0)
            luaL_error(L, "%s: unknown aggregation '%s' (count, sum, mean, min, max, std)",
                       what, lua_tostring(L, -1));
        lua_pop(L, 1);
        int t = agg_field(L, "col", 2);
        a[i].col = NULL;
        if (a[i].op != DAGG_COUNT) {
            if (t != LUA_TSTRING)
                luaL_error(L, "%s: aggregation %d (%s) needs a column name", what, i + 1,
                           dagg_op_name(a[i].op));
            a[i].col = lua_tostring(L, -1);
            lua_rawseti(L, keep, 2 * i + 1); /* keeps the name alive */
        } else {
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (a[i].op == DAGG_COUNT)
            lua_pushliteral(L, "count()");
        else
            lua_pushfstring(L, "%s(%s)", dagg_op_name(a[i].op), a[i].col);
        a[i].out = lua_tostring(L, -1);
        lua_rawseti(L, keep, 2 * i + 2);
        dcol_type_t input = DCOL_FLOAT64; /* without a block: only the field names matter */
        if (b != NULL && a[i].col != NULL) {
            int c = data_block_find(b, a[i].col);
            if (c < 0)
                data_block_no_column(L, b, what, a[i].col);
            input = b->cols[c]->type;
        }
        char err[128];
        if (dagg_layout(a[i].op, input, &a[i].lay, err, sizeof(err)) != 0)
            luaL_error(L, "%s: %s: %s (column '%s')", what, a[i].out, err, a[i].col);
    }
    *n = na;
    return a;
}

/* The name of state field f of agg i (0-based): "__<i+1>_<field>", kept in the table at keep. */
static const char *state_name(lua_State *L, int keep, int i, const aggspec_t *a, int f)
{
    lua_pushfstring(L, "__%d_%s", i + 1, a->lay.field[f]);
    const char *s = lua_tostring(L, -1);
    lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
    return s;
}

static int count_states(const aggspec_t *a, int na)
{
    int n = 0;
    for (int i = 0; i < na; i++)
        n += a[i].lay.n;
    return n;
}

/* b:group_aggregate(keys, aggs) -> partial Block: key columns, then each agg's state columns */
static int l_group_aggregate(lua_State *L)
{
    lua_settop(L, 3);
    data_block_t *b = data_block_check(L, 1);
    int nk, na;
    int *ki = data_block_check_keys(L, 2, b, "group_aggregate", &nk);
    check_key_types(L, b, ki, nk, "group_aggregate");
    aggspec_t *a = check_aggs(L, 3, b, "group_aggregate", &na);
    int keep = lua_gettop(L) - 1;
    int nout = nk + count_states(a, na);
    const char **names = data_scratch(L, (size_t)nout * sizeof(*names));
    const dcol_t **keys = key_columns(L, b, ki, nk);
    for (int k = 0; k < nk; k++)
        names[k] = b->names[ki[k]];
    for (int i = 0, pos = nk; i < na; i++)
        for (int f = 0; f < a[i].lay.n; f++)
            names[pos++] = state_name(L, keep, i, &a[i], f);
    dcol_t **out = data_scratch(L, (size_t)nout * sizeof(*out));
    data_push_empty_columns(L, nout, out);

    dgroup_t g;
    if (dgroup_build(keys, nk, b->nrows, &g) != 0)
        return luaL_error(L, "group_aggregate: out of memory");
    int rc = 0;
    for (int k = 0; k < nk && rc == 0; k++)
        rc = dcol_take(keys[k], g.first, g.ngroups, out[k]);
    for (int i = 0, pos = nk; i < na && rc == 0; pos += a[i].lay.n, i++) {
        dcol_t st[DAGG_MAX_STATE];
        const dcol_t *col = a[i].col ? b->cols[data_block_find(b, a[i].col)] : NULL;
        if ((rc = dagg_partial(a[i].op, col, &g, st)) == 0)
            for (int f = 0; f < a[i].lay.n; f++)
                *out[pos + f] = st[f];
    }
    dgroup_free(&g);
    if (rc != 0)
        return luaL_error(L, "group_aggregate: out of memory");
    data_account(L, out, nout);
    data_block_push_columns(L, nout, names);
    return 1;
}

/* Orders groups ascending by key: firsts[k] get each group's key values (owned, freed by the
 * caller also on failure) and order[0..ngroups) the sorted group numbers. 0 or -1. */
static int sort_groups(const dcol_t *const *keys, int nk, const dgroup_t *g, dcol_t *firsts,
                       int64_t *order)
{
    memset(firsts, 0, (size_t)nk * sizeof(*firsts));
    int rc = -1;
    dsort_key_t *sk = malloc((size_t)(nk > 0 ? nk : 1) * sizeof(*sk));
    if (sk == NULL)
        return -1;
    for (int k = 0; k < nk; k++) {
        if (dcol_take(keys[k], g->first, g->ngroups, &firsts[k]) != 0)
            goto out;
        sk[k].col = &firsts[k];
        sk[k].descending = false;
    }
    rc = dsort_argsort(sk, nk, g->ngroups, order);
out:
    free(sk);
    return rc;
}

static void free_cols(dcol_t *cols, int n)
{
    for (int k = 0; k < n; k++)
        dcol_free(&cols[k]);
}

/* The combine itself, on the concatenated key and state columns (in[0..nk) keys, then states).
 * No Lua calls. 0, or -1 when out of memory. */
static int combine(dcol_t *const *in, int64_t nrows, int nk, const aggspec_t *a, int na,
                   int64_t *order, dcol_t *firsts, dcol_t **out)
{
    dgroup_t g;
    int rc = -1;
    if (dgroup_build((const dcol_t *const *)in, nk, nrows, &g) != 0)
        return -1;
    if (nk == 0 && g.ngroups == 0) {
        /* A global aggregate of no rows still has its one row. */
        for (int i = 0, pos = 0; i < na; pos += a[i].lay.n, i++)
            if (dagg_empty(a[i].op, (const dcol_t *const *)in + pos, out[i]) != 0)
                goto out;
        rc = 0;
        goto out;
    }
    if (sort_groups((const dcol_t *const *)in, nk, &g, firsts, order) != 0)
        goto out;
    for (int k = 0; k < nk; k++)
        if (dcol_take(&firsts[k], order, g.ngroups, out[k]) != 0)
            goto out;
    for (int i = 0, pos = nk; i < na; pos += a[i].lay.n, i++) {
        dcol_t fin;
        if (dagg_combine(a[i].op, (const dcol_t *const *)in + pos, &g, &fin) != 0)
            goto out;
        int r = dcol_take(&fin, order, g.ngroups, out[nk + i]);
        dcol_free(&fin);
        if (r != 0)
            goto out;
    }
    rc = 0;
out:
    free_cols(firsts, nk);
    dgroup_free(&g);
    return rc;
}

/* Finds column name in partial j, raising when it lacks it. */
static const dcol_t *partial_column(lua_State *L, const data_block_t *p, lua_Integer j,
                                    const char *name)
{
    int c = data_block_find(p, name);
    if (c < 0)
        data_block_no_column(L, p, lua_pushfstring(L, "group_combine: partial %I", j), name);
    return p->cols[c];
}

/* C.group_combine(partials, keys, aggs) -> final Block sorted by key */
static int l_group_combine(lua_State *L)
{
    lua_settop(L, 3);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer np = (lua_Integer)lua_rawlen(L, 1);
    if (np == 0)
        return luaL_error(L, "group_combine: no partials");
    data_block_t **parts = data_scratch(L, (size_t)np * sizeof(*parts));
    int64_t total = 0;
    for (lua_Integer j = 0; j < np; j++) {
        lua_rawgeti(L, 1, j + 1);
        if ((parts[j] = data_block_test(L, -1)) == NULL)
            return luaL_error(L, "group_combine: partial %I is a %s, expected a Block", j + 1,
                              luaL_typename(L, -1));
        lua_pop(L, 1);
        total += parts[j]->nrows;
    }
    int nk, na;
    int *ki = data_block_check_keys(L, 2, parts[0], "group_combine", &nk);
    aggspec_t *a = check_aggs(L, 3, NULL, "group_combine", &na);
    int keep = lua_gettop(L) - 1;
    int nin = nk + count_states(a, na), nout = nk + na;
    const char **in_names = data_scratch(L, (size_t)nin * sizeof(*in_names));
    const char **out_names = data_scratch(L, (size_t)nout * sizeof(*out_names));
    for (int k = 0; k < nk; k++)
        in_names[k] = out_names[k] = parts[0]->names[ki[k]];
    for (int i = 0, pos = nk; i < na; i++) {
        out_names[nk + i] = a[i].out;
        for (int f = 0; f < a[i].lay.n; f++)
            in_names[pos++] = state_name(L, keep, i, &a[i], f);
    }
    const dcol_t **srcs = data_scratch(L, (size_t)nin * (size_t)np * sizeof(*srcs));
    for (int c = 0; c < nin; c++)
        for (lua_Integer j = 0; j < np; j++)
            srcs[c * np + j] = partial_column(L, parts[j], j + 1, in_names[c]);
    for (int k = 0; k < nk; k++)
        if (!dsort_supported(srcs[k * np]->type))
            return luaL_error(L, "group_combine: key column '%s' is a %s", in_names[k],
                              dcol_type_name(srcs[k * np]->type));
    int64_t *order = data_scratch(L, (size_t)total * sizeof(*order));
    dcol_t *firsts = data_scratch(L, (size_t)nk * sizeof(*firsts));
    dcol_t **in = data_scratch(L, (size_t)nin * sizeof(*in));
    data_push_empty_columns(L, nin, in); /* the concatenations, collected with the stack */
    for (int c = 0; c < nin; c++) {
        char err[160];
        if (dcol_concat(srcs + c * np, (int)np, in[c], err, sizeof(err)) != 0)
            return luaL_error(L, "group_combine: column '%s': %s", in_names[c], err);
    }
    dcol_t **out = data_scratch(L, (size_t)nout * sizeof(*out));
    data_push_empty_columns(L, nout, out);
    if (combine(in, total, nk, a, na, order, firsts, out) != 0)
        return luaL_error(L, "group_combine: out of memory");
    data_account(L, in, nin);
    data_account(L, out, nout);
    data_block_push_columns(L, nout, out_names);
    return 1;
}

/* b:group_split(keys) -> list of Blocks, one per distinct key, ascending by key */
static int l_group_split(lua_State *L)
{
    lua_settop(L, 2);
    data_block_t *b = data_block_check(L, 1);
    int nk;
    int *ki = data_block_check_keys(L, 2, b, "group_split", &nk);
    check_key_types(L, b, ki, nk, "group_split");
    const dcol_t **keys = key_columns(L, b, ki, nk);
    size_t n = (size_t)b->nrows;
    uint32_t *part = data_scratch(L, n * sizeof(*part));
    int64_t *sorted = data_scratch(L, (n + 1) * sizeof(*sorted));
    int64_t *rank = data_scratch(L, (n + 1) * sizeof(*rank));
    dcol_t *firsts = data_scratch(L, (size_t)(nk ? nk : 1) * sizeof(*firsts));
    memset(firsts, 0, (size_t)(nk ? nk : 1) * sizeof(*firsts));

    dgroup_t g;
    if (dgroup_build(keys, nk, b->nrows, &g) != 0)
        return luaL_error(L, "group_split: out of memory");
    int64_t ng = g.ngroups;
    int rc = ng > MAX_PARTS ? -2 : sort_groups(keys, nk, &g, firsts, sorted);
    free_cols(firsts, nk);
    if (rc == 0) {
        for (int64_t j = 0; j < ng; j++)
            rank[sorted[j]] = j;
        for (int64_t i = 0; i < b->nrows; i++)
            part[i] = (uint32_t)rank[g.gid[i]];
    }
    dgroup_free(&g);
    if (rc == -2)
        return luaL_error(L, "group_split: %I groups is too many", (lua_Integer)ng);
    if (rc != 0)
        return luaL_error(L, "group_split: out of memory");
    split_by_part(L, b, part, (uint32_t)ng);
    return 1;
}

const luaL_Reg data_block_ops_methods[] = {
    {"sort", l_sort},
    {"partition_hash", l_partition_hash},
    {"partition_random", l_partition_random},
    {"partition_bounds", l_partition_bounds},
    {"shuffle", l_shuffle},
    {"sample", l_sample},
    {"group_aggregate", l_group_aggregate},
    {"group_split", l_group_split},
    {NULL, NULL},
};

const luaL_Reg data_block_ops_funcs[] = {
    {"group_combine", l_group_combine},
    {NULL, NULL},
};
