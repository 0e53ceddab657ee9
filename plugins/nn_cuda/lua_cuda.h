/* What the nn_cuda plugin's Lua binding files share: the host API, the CUDA tensor type
 * ("luray.nn_cuda.Tensor") and its checkers, the Lua state's device context, results allocated
 * in device memory, copies between host and device, and each file's opener; the checks that
 * hold for both backends come from the CPU plugin's lua_args.h. Only this layer raises Lua
 * errors; at every raise, what it allocated is already owned by a Lua value. */
#ifndef LURAY_NN_CUDA_LUA_CUDA_H
#define LURAY_NN_CUDA_LUA_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "../nn/lua_args.h"
#include "cu_mem.h"
#include "cu_shape.h"
#include "luray/plugin.h"

#define CU_TENSOR_MT "luray.nn_cuda.Tensor"

extern const luray_host_api_t *cu_host;

/* A contiguous tensor in device memory. Views (narrow, view) share the buffer. */
typedef struct {
    cu_buf_t *buf; /* one reference; NULL once closed */
    void *data;    /* the first element (NULL when there are none) */
    size_t nbytes;
    int dtype;
    int ndim;
    int64_t shape[NN_MAX_DIMS];
} cu_tensor_t;

/* The Lua state's device context, made on first use; raises when there is no device. */
cu_ctx_t *cu_lua_ctx(lua_State *L);
/* Pushes why CUDA cannot run here ("no CUDA device was found (...)"), or returns false having
 * pushed nothing when a device is there. */
bool cu_push_no_device(lua_State *L);

/* Raises "<what>: <CUDA's text>" unless err is cudaSuccess. */
void cu_check_cuda(lua_State *L, cudaError_t err, const char *what);
/* Raises "<what>: <msg>" unless msg is NULL (the cu_blas.h convention). */
void cu_check_msg(lua_State *L, const char *msg, const char *what);

void cu_shape_of(const cu_tensor_t *t, nn_shape_t *s);

/* The CUDA tensor at arg, or NULL when the value is something else. */
cu_tensor_t *cu_test_tensor(lua_State *L, int arg);
/* The live CUDA tensor at arg; raises naming the argument otherwise (a CPU tensor included). */
cu_tensor_t *cu_check_tensor(lua_State *L, int arg);
/* The live float32 CUDA tensor at arg. */
cu_tensor_t *cu_check_f32(lua_State *L, int arg);
/* A float32 operand that may also be a number: then the result is NULL, *scalar holds it and s
 * is 0-d (the kernels take a NULL operand's value beside it). */
const float *cu_check_operand(lua_State *L, int arg, float *scalar, nn_shape_t *s);
/* A shape from a table of non-negative integers, an integer, or a tensor (core or CUDA). */
void cu_check_shape(lua_State *L, int arg, nn_shape_t *s);

/* Pushes a new tensor (zeroed if `zero`); raises when device memory runs out even after a full
 * garbage collection. */
cu_tensor_t *cu_push_new(lua_State *L, int dtype, const nn_shape_t *s, bool zero);
/* The result tensor: the float32 tensor of shape s given at arg (pushed again), or a new one
 * when arg is nil or absent; left at the top of the stack either way. */
cu_tensor_t *cu_push_out(lua_State *L, int arg, const nn_shape_t *s, bool zero);
/* Pushes a view of t (the same buffer) with another shape of the same size. */
cu_tensor_t *cu_push_view(lua_State *L, const cu_tensor_t *t, const nn_shape_t *s, size_t offset,
                          size_t nbytes);

/* Pushes a new CUDA tensor holding the core tensor at arg (any dtype, any strides). */
cu_tensor_t *cu_push_upload(lua_State *L, int arg);
/* Copies the core tensor at arg into t (same element count and dtype). */
void cu_upload_into(lua_State *L, cu_tensor_t *t, int arg);
/* Pushes a new core tensor holding t's elements. */
luray_tensor_t *cu_push_download(lua_State *L, const cu_tensor_t *t);
/* Pushes a new int64 CUDA tensor of the n values at host. */
cu_tensor_t *cu_push_upload_i64(lua_State *L, const int64_t *host, int64_t n);
/* The elements of an integer-valued tensor (core or CUDA, any dtype) as int64 in host memory
 * owned by a pushed value; raises naming `what` and the position of a value that is not a
 * whole number. */
const int64_t *cu_push_host_i64(lua_State *L, int arg, const char *what, int64_t *n);

/* Openers: each adds its functions to the module table at idx. */
void cu_open_tensor(lua_State *L, int idx);
void cu_open_transfer(lua_State *L, int idx);
void cu_open_elem(lua_State *L, int idx);
void cu_open_linalg(lua_State *L, int idx);
void cu_open_reduce(lua_State *L, int idx);
void cu_open_loss(lua_State *L, int idx);
void cu_open_optim(lua_State *L, int idx);

#endif
