/* The one header a luray plugin needs.
 *
 * A plugin is a shared library exporting one symbol, `luray_plugin_entry`, which returns a
 * description of the plugin. The host passes the plugin a table of host functions
 * (luray_host_api_t). Both structs carry their size and the ABI version; the host API only ever
 * grows at its end, so a plugin built against an older header keeps working with a newer host.
 * ABI changes are logged in docs/abi.md. */
#ifndef LURAY_PLUGIN_H
#define LURAY_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "luray/errors.h"
#include "luray/tensor.h"

#define LURAY_PLUGIN_ABI 1

#if defined(__GNUC__)
#define LURAY_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define LURAY_PLUGIN_EXPORT
#endif

/* Serialization of a plugin's userdata type, so it can travel in task arguments, results and
 * luray.put. A value is written as a small header (copied into the stream) plus any number of
 * out-of-band buffers: large payloads that are copied once, straight into the shared-memory object
 * store, and on the same node are read back in place without a copy. */
typedef struct luray_ser_writer luray_ser_writer_t;
typedef struct luray_ser_reader luray_ser_reader_t;

typedef struct luray_host_api luray_host_api_t;

typedef struct {
    const char *type_name; /* the userdata's metatable name, e.g. "example.Point" */
    /* Writes the userdata at stack index idx; returns 0 or a LURAY_E* code. */
    int (*encode)(const luray_host_api_t *host, lua_State *L, int idx, luray_ser_writer_t *w);
    /* Pushes exactly one new value made from the reader; returns 0 or a LURAY_E* code (then it
     * pushes nothing). */
    int (*decode)(const luray_host_api_t *host, lua_State *L, luray_ser_reader_t *r);
} luray_serializer_t;

struct luray_host_api {
    uint32_t abi;  /* LURAY_PLUGIN_ABI of the host */
    uint32_t size; /* sizeof(luray_host_api_t) of the host: check before using a later field */

    /* Logging; level 0 error, 1 warning, 2 info, 3 debug. */
    void (*log)(int level, const char *plugin, const char *fmt, ...);
    const char *(*strerror)(int err);

    /* Registers a serializer for a userdata type. The host keeps the pointer: use static storage. */
    int (*register_serializer)(lua_State *L, const luray_serializer_t *ser);

    /* Serialization helpers for encode/decode hooks. */
    int (*ser_write)(luray_ser_writer_t *w, const void *bytes, size_t len);
    /* Adds an out-of-band buffer; the memory must stay valid until the value is stored. */
    int (*ser_write_buffer)(luray_ser_writer_t *w, const void *data, size_t len);
    /* The header bytes written by ser_write, in order. */
    const void *(*ser_header)(luray_ser_reader_t *r, size_t *len);
    size_t (*ser_buffer_count)(luray_ser_reader_t *r);
    /* The i-th (0-based) out-of-band buffer, 64-byte aligned. It lives as long as the value that
     * ser_push_keeper pushes: store that value (lua_setiuservalue) in any userdata that keeps a
     * pointer into the buffer. */
    const void *(*ser_buffer)(luray_ser_reader_t *r, size_t i, size_t *len);
    void (*ser_push_keeper)(lua_State *L, luray_ser_reader_t *r);

    /* --- added after version 1's first release: check `size` before use (docs/abi.md) --- */

    /* Tensors (include/luray/tensor.h): the one dense array type, shared with the core. */
    /* Pushes a new, closed tensor userdata ("luray.Tensor") with one user value slot for a
     * keeper: fill it with tensor_init or tensor_init_data. Raises a Lua error on no memory. */
    luray_tensor_t *(*tensor_push)(lua_State *L);
    /* The tensor at idx, or NULL when the value is not a tensor. */
    luray_tensor_t *(*tensor_test)(lua_State *L, int idx);
    /* A new contiguous tensor with its own buffer (zeroed if `zero`); 0 or a LURAY_E* code. */
    int (*tensor_init)(luray_tensor_t *t, int dtype, int ndim, const int64_t *shape, bool zero);
    /* A contiguous tensor over existing memory of exactly the shape's size; buf may be NULL (then
     * keep the memory alive by storing its owner as the tensor's user value 1). */
    int (*tensor_init_data)(luray_tensor_t *t, int dtype, int ndim, const int64_t *shape,
                            void *data, size_t nbytes, luray_tbuf_t *buf, bool readonly);
    /* Bytes per element of a dtype; 0 for an unknown one. */
    size_t (*dtype_size)(int dtype);
};

typedef struct {
    uint32_t abi;  /* LURAY_PLUGIN_ABI the plugin was built against */
    uint32_t size; /* sizeof(luray_plugin_t) of the plugin */
    const char *name;    /* "example": loaded by require("luray.example") */
    const char *version; /* "1.0.0" */
    const char *description;

    /* Called once after load, before anything else; returns 0 or a LURAY_E* code. */
    int (*init)(const luray_host_api_t *host);
    /* Called once before unload. May be NULL. */
    void (*shutdown)(void);
    /* Opens the plugin's Lua module: pushes one table (what require returns). May be NULL. */
    int (*luaopen)(lua_State *L);
    /* Serializers for the plugin's types, terminated by an entry with type_name NULL. The host
     * registers them in every Lua state of the process before the module opens, so a worker can
     * decode a plugin value before the script there required the plugin. May be NULL. */
    const luray_serializer_t *serializers;
} luray_plugin_t;

typedef const luray_plugin_t *(*luray_plugin_entry_fn)(void);

#define LURAY_PLUGIN_ENTRY_SYMBOL "luray_plugin_entry"

#endif
