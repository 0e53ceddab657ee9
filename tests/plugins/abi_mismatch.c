/* Fixture: a plugin built for an ABI this luray does not have (999); loading must refuse it with
 * a message naming the file and both ABI numbers, and never call init. */
#include "luray/plugin.h"

static int never_init(const luray_host_api_t *host)
{
    (void)host;
    return LURAY_ESTATE;
}

static const luray_plugin_t plugin = {
    .abi = 999,
    .size = sizeof(luray_plugin_t),
    .name = "abi_mismatch",
    .version = "0.0.1",
    .description = "test fixture: wrong ABI",
    .init = never_init,
};

LURAY_PLUGIN_EXPORT const luray_plugin_t *luray_plugin_entry(void)
{
    return &plugin;
}
