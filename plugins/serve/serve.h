/* What the serve plugin's files share: the host API the plugin was given at init. */
#ifndef LURAY_SERVE_H
#define LURAY_SERVE_H

#include <luray/plugin.h>
#include <luray/tensor.h>

extern const luray_host_api_t *serve_host;

#endif
