/* Names and messages for the LURAY_E* codes. */
#include "errors_str.h"

#include <stdarg.h>
#include <stdio.h>

const char *luray_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define LURAY_STRERROR_CASE(name, value, msg) \
    case value:                              \
        return msg;
        LURAY_ERRNO_MAP(LURAY_STRERROR_CASE)
#undef LURAY_STRERROR_CASE
    default:
        return "unknown error";
    }
}

const char *luray_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define LURAY_ERRNAME_CASE(name, value, msg) \
    case value:                             \
        return "E" #name;
        LURAY_ERRNO_MAP(LURAY_ERRNAME_CASE)
#undef LURAY_ERRNAME_CASE
    default:
        return "EUNKNOWN";
    }
}

void luray_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
