/* The argument checks, error messages and Lua names that the bindings of both nn backends share
 * (this plugin and nn_cuda, which compiles lua_args.c too). They see Lua values and nn_shape_t,
 * never a backend's tensor type, and raise Lua errors as only a binding may. */
#ifndef LURAY_NN_LUA_ARGS_H
#define LURAY_NN_LUA_ARGS_H

#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "nn_optim.h"
#include "nn_shape.h"

/* The Lua names of the ops, indexed by the op codes both backends use (nn_binary_op_t,
 * nn_unary_op_t, the luray dtypes, the pair losses mse, bce, bce_with_logits); NULL-terminated
 * for luaL_checkoption. */
extern const char *const nn_binary_names[];
extern const char *const nn_unary_names[];
extern const char *const nn_dtype_names[];
extern const char *const nn_pair_loss_names[];

/* "float32", ..., or "unknown" for a code out of range. */
const char *nn_dtype_name(int dtype);
/* Pushes "{2, 3}" and returns it. */
const char *nn_push_shape_string(lua_State *L, const nn_shape_t *s);
/* For each name i: sets field "<names[i]><suffix>" of the table at idx to fn with upvalue i. */
void nn_set_closures(lua_State *L, int idx, const char *const *names, const char *suffix,
                     lua_CFunction fn);

/* A shape from an integer or a table of non-negative integers (a backend checks for its
 * tensors first). */
void nn_check_dims(lua_State *L, int arg, nn_shape_t *s);
/* A dimension argument, 1-based with negatives counting from the end, as 0-based. */
int nn_check_axis(lua_State *L, int arg, int ndim);
/* The reduction option at arg, "mean" (the default, true) or "sum" (false). */
bool nn_check_mean(lua_State *L, int arg);

/* out = the shape a and b broadcast to; raises "<op>: shapes ... do not broadcast". */
void nn_check_broadcast(lua_State *L, const char *op, const nn_shape_t *a, const nn_shape_t *b,
                        nn_shape_t *out);
/* Raises unless a copy from shape src into shape dst moves as many elements as it needs. */
void nn_check_copy_sizes(lua_State *L, const nn_shape_t *dst, const nn_shape_t *src);
/* Raises unless rows first..first+count-1 (1-based) lie within rows rows. */
void nn_check_row_range(lua_State *L, lua_Integer first, lua_Integer count, int64_t rows);
/* Reads the first n elements of the list of 1-based positions at arg into idx, 0-based; raises
 * at an element that is not an integer. */
void nn_read_position_list(lua_State *L, int arg, int64_t *idx, int64_t n);
/* Raises at the first of the n 0-based positions that is not a row of a tensor of rows rows. */
void nn_check_positions(lua_State *L, const int64_t *idx, int64_t n, int64_t rows);

/* A reduction's geometry: the axis (or -1 for everything) as outer x len x inner, and the shape
 * of the result. */
typedef struct {
    int axis;
    int64_t outer, len, inner;
    nn_shape_t out;
} nn_reduction_t;

/* The reduction of shape s by the dimension at arg (nil: all), keepdim at arg + 1. */
void nn_check_reduction(lua_State *L, const nn_shape_t *s, int arg, nn_reduction_t *r);

/* The rows softmax works on, for the tensor of shape s at arg: its last dimension (*cols) and
 * the count of rows before it; raises when s has no dimension. */
void nn_check_softmax_rows(lua_State *L, int arg, const nn_shape_t *s, int64_t *rows,
                           int64_t *cols);

/* Raises unless prediction ps and target ts hold the same shape once dimensions of size 1 are
 * left out (so {n, 1} predictions meet {n} targets); name is the loss's. */
void nn_check_loss_shapes(lua_State *L, const char *name, const nn_shape_t *ps,
                          const nn_shape_t *ts);

/* SGD's lr, momentum, dampening, weight_decay and nesterov at arg .. arg + 4. */
void nn_check_sgd_opts(lua_State *L, int arg, nn_sgd_opts_t *o);
/* Adam's lr, beta1, beta2, eps, weight_decay and decoupled at arg .. arg + 5. */
void nn_check_adam_opts(lua_State *L, int arg, nn_adam_opts_t *o);

#endif
