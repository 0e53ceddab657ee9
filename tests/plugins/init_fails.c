/* Fixture: a well-formed plugin whose init refuses to start (LURAY_EUNSUPPORTED), as a plugin
 * whose device or library is missing would. */
#include "luray/plugin.h"

static int failing_init(const luray_host_api_t *host)
{
    host->log(1, "init_fails", "refusing to start (test fixture)");
    return LURAY_EUNSUPPORTED;
}

static const luray_plugin_t plugin = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_plugin_t),
    .name = "init_fails",
    .version = "0.0.1",
    .description = "test fixture: init returns an error",
    .init = failing_init,
};

LURAY_PLUGIN_EXPORT const luray_plugin_t *luray_plugin_entry(void)
{
    return &plugin;
}
