/* luray's value serialization: Lua values to a self-contained object blob and back.
 *
 * Blob layout (all integers little-endian):
 *   u32 magic "LRO1" | u32 n_oob | u64 stream_len | n_oob x (u64 offset, u64 len)
 *   | stream (stream_len bytes) | padding | out-of-band buffers, each at a 64-byte aligned offset
 *   (offsets are from the blob start).
 * The stream holds `count` values (a varint first), each a tag byte and its payload. Extension
 * types (ObjectRef, ActorHandle, tensors, plugin types) are written by registered hooks as their
 * type name, a header and out-of-band buffers; large buffers therefore are copied exactly once when
 * a blob is written, and decoding can hand out views into the blob without copying. */
#ifndef LURAY_CORE_SERIALIZE_H
#define LURAY_CORE_SERIALIZE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buf.h"
#include "ids.h"
#include "luray/plugin.h"

#define LURAY_BLOB_MAGIC 0x314f524cu /* "LRO1" */
#define LURAY_BLOB_ALIGN 64
/* Nesting of tables and functions past which encode and decode refuse a value (C stack bound). */
#define LURAY_SER_MAX_DEPTH 200

typedef struct {
    const void *ptr;
    size_t len;
} luray_span_t;

/* An encoder: one per blob being built. */
typedef struct luray_ser {
    luray_buf_t stream;
    luray_span_t *oob;
    size_t n_oob, cap_oob;
    luray_oid_t *refs; /* ObjectRefs found anywhere in the values (for reference counting) */
    size_t n_refs, cap_refs;
    char err[512]; /* set when encode fails: names the value's path */
} luray_ser_t;

void luray_ser_init(luray_ser_t *s);
void luray_ser_close(luray_ser_t *s);
/* Encodes the n values at stack indexes first..first+n-1 (the stack is left as it was).
 * `what` names them in errors ("argument", "return value", "value"): the error then reads
 * `cannot serialize argument 2: field "conn" is a userdata (FILE*)`.
 * Returns 0, or LURAY_ESERIALIZE / LURAY_ENOMEM with s->err set. */
int luray_ser_encode(lua_State *L, int first, int n, const char *what, luray_ser_t *s);
/* Size of the blob luray_ser_write will produce. */
size_t luray_ser_blob_size(const luray_ser_t *s);
/* Writes the blob into dst (luray_ser_blob_size bytes; dst 64-byte aligned for aligned buffers). */
void luray_ser_write(const luray_ser_t *s, void *dst);

/* Decodes a blob, pushing its values; returns how many (>= 0), or a negative LURAY_E* code with
 * nothing pushed and err filled. keeper_idx is a stack index of a value that keeps the blob's
 * memory alive (extension decoders may keep views into it by storing that value), or 0 when the
 * blob memory is only valid during the call (decoders then copy). */
int luray_ser_decode(lua_State *L, const void *blob, size_t len, int keeper_idx, char *err,
                     size_t errlen);
/* Checks the blob header and returns 0 or LURAY_EPROTO without touching Lua. */
int luray_ser_check(const void *blob, size_t len);

/* Registers an extension type in this Lua state (kept in the registry). Core types (ObjectRef,
 * ActorHandle, Tensor) and plugins both come through here. `ser` must outlive the state. */
int luray_ser_register(lua_State *L, const luray_serializer_t *ser);
/* Called when the stream names a type no serializer is registered for: may load it (e.g. the
 * plugin named by the part of the type name before the first '.') and return 0 to retry. */
typedef int (*luray_ser_resolver_fn)(lua_State *L, const char *type_name);
void luray_ser_set_resolver(lua_State *L, luray_ser_resolver_fn fn);
/* Whether luray_ser_decode may load Lua bytecode in this state (default: allowed). Loading
 * bytecode is only safe from authenticated peers; fuzzing and untrusted input turn it off. */
void luray_ser_set_allow_bytecode(lua_State *L, int allow);

/* Lets plain tables with the metatable at idx travel: the metatable's __name is written and the
 * decoder sets the metatable registered under that name in its own process (luray.lua registers
 * its RemoteFunction and ActorClass types this way, in every driver and worker). */
#define LURAY_SER_METATABLES "luray.ser.metatables"
void luray_ser_register_metatable(lua_State *L, int idx);

/* The host API's serialization helpers (plugin.h), implemented here. */
int luray_ser_writer_write(luray_ser_writer_t *w, const void *bytes, size_t len);
int luray_ser_writer_buffer(luray_ser_writer_t *w, const void *data, size_t len);
/* Records an ObjectRef met inside an extension value (ObjectRef's own encoder uses it). */
int luray_ser_writer_ref(luray_ser_writer_t *w, luray_oid_t id);
const void *luray_ser_reader_header(luray_ser_reader_t *r, size_t *len);
size_t luray_ser_reader_buffer_count(luray_ser_reader_t *r);
const void *luray_ser_reader_buffer(luray_ser_reader_t *r, size_t i, size_t *len);
void luray_ser_reader_push_keeper(lua_State *L, luray_ser_reader_t *r);
/* The process-wide host API table handed to plugins and used by core extension types.
 * It is defined in core/host_api.c. */
const luray_host_api_t *luray_host_api(void);
/* Sets the register_serializer and ser_* fields of a host API table. */
void luray_host_api_fill_ser(luray_host_api_t *api);

#endif
