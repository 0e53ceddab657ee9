/* What the nn plugin's Lua binding files share: the host API, argument checkers over the core
 * tensor type, output allocation, and each file's opener. Only this layer raises Lua errors. */
#ifndef LURAY_NN_LUA_NN_H
#define LURAY_NN_LUA_NN_H

#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "lua_args.h"
#include "luray/plugin.h"
#include "nn_shape.h"

extern const luray_host_api_t *nn_host;

bool nn_is_contiguous(const luray_tensor_t *t);
void nn_shape_of(const luray_tensor_t *t, nn_shape_t *s);

/* The live tensor of any dtype at arg; raises naming the argument otherwise. */
luray_tensor_t *nn_check_tensor(lua_State *L, int arg);
/* The contiguous float32 tensor at arg; raises naming the argument otherwise. */
luray_tensor_t *nn_check_f32(lua_State *L, int arg);
/* A float32 operand that may also be a number: then *scalar holds it, s is 0-d and the result
 * points at *scalar. */
const float *nn_check_operand(lua_State *L, int arg, float *scalar, nn_shape_t *s);
void nn_check_writable(lua_State *L, const luray_tensor_t *t, int arg);
/* A shape from a tensor's shape, an integer or a table of non-negative integers. */
void nn_check_shape(lua_State *L, int arg, nn_shape_t *s);

/* Pushes a new contiguous tensor (zeroed if `zero`); raises on no memory. */
luray_tensor_t *nn_push_new(lua_State *L, int dtype, const nn_shape_t *s, bool zero);
/* The result tensor: the writable float32 tensor of shape s given at arg (pushed again), or a
 * new one when arg is nil or absent. Either way it is left at the top of the stack. */
luray_tensor_t *nn_push_out(lua_State *L, int arg, const nn_shape_t *s, bool zero);

/* The elements of an integer-valued tensor (any dtype) as a new int64 tensor pushed on the
 * stack, for class labels and indices; raises naming `what` and the position of a value that is
 * not a whole number. */
const int64_t *nn_push_int64(lua_State *L, int arg, const char *what, int64_t *n);

/* Openers: each adds its functions to the module table at idx. */
void nn_open_elem(lua_State *L, int idx);
void nn_open_linalg(lua_State *L, int idx);
void nn_open_reduce(lua_State *L, int idx);
void nn_open_loss(lua_State *L, int idx);
void nn_open_random(lua_State *L, int idx);
void nn_open_optim(lua_State *L, int idx);

#endif
