/* Fixture: a plugin whose declared name differs from its file name (name_mismatch.so says
 * "other"); loading must refuse it rather than register a module under the wrong name. */
#include "luray/plugin.h"

static const luray_plugin_t plugin = {
    .abi = LURAY_PLUGIN_ABI,
    .size = sizeof(luray_plugin_t),
    .name = "other",
    .version = "0.0.1",
    .description = "test fixture: name differs from the file",
};

LURAY_PLUGIN_EXPORT const luray_plugin_t *luray_plugin_entry(void)
{
    return &plugin;
}
