/* The host API table handed to plugins (include/luray/plugin.h): one static table per process.
 * Fields are only ever appended; see docs/abi.md. */
#include "errors_str.h"
#include "log.h"
#include "lua_tensor.h"
#include "serialize.h"

static const luray_host_api_t host_api = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_host_api_t),
    .log = luray_log,
    .strerror = luray_strerror,
    .register_serializer = luray_ser_register,
    .ser_write = luray_ser_writer_write,
    .ser_write_buffer = luray_ser_writer_buffer,
    .ser_header = luray_ser_reader_header,
    .ser_buffer_count = luray_ser_reader_buffer_count,
    .ser_buffer = luray_ser_reader_buffer,
    .ser_push_keeper = luray_ser_reader_push_keeper,
    .tensor_push = luray_lua_tensor_push,
    .tensor_test = luray_lua_tensor_test,
    .tensor_init = luray_tensor_init,
    .tensor_init_data = luray_tensor_init_data,
    .dtype_size = luray_dtype_size,
};

const luray_host_api_t *luray_host_api(void)
{
    return &host_api;
}
