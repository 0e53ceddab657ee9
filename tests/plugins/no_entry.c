/* Fixture: a shared library without the luray_plugin_entry symbol (it exports a misspelt one). */
#include "luray/plugin.h"

LURAY_PLUGIN_EXPORT int luray_plugin_entry_missing(void)
{
    return 0;
}
