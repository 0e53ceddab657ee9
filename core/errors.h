/* Error codes shared by the core and plugins: 0 or a negative LURAY_E* value. */
#ifndef LURAY_CORE_ERRORS_H
#define LURAY_CORE_ERRORS_H

#include "luray/errors.h"

#endif
