/* Text for the LURAY_E* codes. */
#ifndef LURAY_CORE_ERRORS_STR_H
#define LURAY_CORE_ERRORS_STR_H

#include "errors.h"

const char *luray_strerror(int err);
const char *luray_err_name(int err);

#endif
