/* Process-wide logging to stderr: one line per message, "luray[<who>]: <level>: <text>",
 * filtered by a global level (env LURAY_LOG_LEVEL, or luray_log_set_level). */
#ifndef LURAY_CORE_LOG_H
#define LURAY_CORE_LOG_H

#include <stdarg.h>

enum {
    LURAY_LOG_ERROR = 0,
    LURAY_LOG_WARN = 1,
    LURAY_LOG_INFO = 2,
    LURAY_LOG_DEBUG = 3,
};

/* Messages above this level are dropped. Until set, the level comes from LURAY_LOG_LEVEL (a number
 * 0-3 or error, warn, info, debug); without it, LURAY_LOG_WARN. Values are clamped to 0..3. */
void luray_log_set_level(int level);
int luray_log_level(void);
/* Parses "0".."3" or a level name; returns the level, or -1 when the text is neither. */
int luray_log_parse_level(const char *text);

/* `who` names the component or plugin ("store", "example"); NULL reads as "plugin". The line is
 * written with one call so lines from several threads or processes do not interleave. */
void luray_log(int level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void luray_vlog(int level, const char *who, const char *fmt, va_list ap);

#endif
