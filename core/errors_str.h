/* Text for the LURAY_E* codes. */
#ifndef LURAY_CORE_ERRORS_STR_H
#define LURAY_CORE_ERRORS_STR_H

#include <stddef.h>

#include "errors.h"

const char *luray_strerror(int err);
const char *luray_err_name(int err);
/* Formats an error message into err[errlen] (nothing when err is NULL or errlen is 0). */
void luray_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
