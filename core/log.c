/* Process-wide logging to stderr with a global level (see log.h). */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LOG_UNSET (-1)
#define LOG_LINE_MAX 2048

static atomic_int log_level = LOG_UNSET;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

static int clamp_level(int level)
{
    if (level < LURAY_LOG_ERROR)
        return LURAY_LOG_ERROR;
    if (level > LURAY_LOG_DEBUG)
        return LURAY_LOG_DEBUG;
    return level;
}

int luray_log_parse_level(const char *text)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {
        {"error", LURAY_LOG_ERROR}, {"warn", LURAY_LOG_WARN}, {"warning", LURAY_LOG_WARN},
        {"info", LURAY_LOG_INFO},   {"debug", LURAY_LOG_DEBUG},
    };
    if (text == NULL || *text == '\0')
        return -1;
    if (text[0] >= '0' && text[0] <= '9' && text[1] == '\0')
        return clamp_level(text[0] - '0');
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(text, names[i].name) == 0)
            return names[i].level;
    }
    return -1;
}

void luray_log_set_level(int level)
{
    atomic_store(&log_level, clamp_level(level));
}

int luray_log_level(void)
{
    int level = atomic_load(&log_level);
    if (level != LOG_UNSET)
        return level;
    /* Read the environment once; a racing first call computes the same value. */
    level = luray_log_parse_level(getenv("LURAY_LOG_LEVEL"));
    if (level < 0)
        level = LURAY_LOG_WARN;
    int expected = LOG_UNSET;
    atomic_compare_exchange_strong(&log_level, &expected, level);
    return atomic_load(&log_level);
}

void luray_vlog(int level, const char *who, const char *fmt, va_list ap)
{
    if (level > luray_log_level())
        return;
    char line[LOG_LINE_MAX];
    int n = snprintf(line, sizeof(line), "luray[%s]: %s: ", who ? who : "plugin",
                     level_names[clamp_level(level)]);
    if (n < 0)
        return;
    size_t used = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    int m = vsnprintf(line + used, sizeof(line) - used, fmt, ap);
    if (m > 0)
        used += (size_t)m < sizeof(line) - used ? (size_t)m : sizeof(line) - used - 1;
    if (used > 0 && line[used - 1] == '\n')
        used--; /* callers may end with a newline or not; print exactly one */
    line[used++] = '\n';
    /* One write(2): stdio may split a long line, and the line must not mix with other writers. */
    ssize_t w = write(STDERR_FILENO, line, used);
    (void)w;
}

void luray_log(int level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    luray_vlog(level, who, fmt, ap);
    va_end(ap);
}
