/* luray error codes: every core and plugin function returns 0 or one of these (negative). */
#ifndef LURAY_ERRORS_H
#define LURAY_ERRORS_H

/* One table makes the codes, their names and their messages. */
#define LURAY_ERRNO_MAP(X)                                                   \
    X(NOMEM, -1, "out of memory")                                            \
    X(INVAL, -2, "invalid argument")                                         \
    X(PROTO, -3, "malformed message")                                        \
    X(IO, -4, "input/output error")                                          \
    X(NOENT, -5, "not found")                                                \
    X(EXIST, -6, "already exists")                                           \
    X(FULL, -7, "object store is full")                                      \
    X(TOOBIG, -8, "value too large")                                         \
    X(TIMEDOUT, -9, "timed out")                                             \
    X(CLOSED, -10, "connection closed")                                      \
    X(ABI, -11, "plugin ABI mismatch")                                       \
    X(SERIALIZE, -12, "value cannot be serialized")                          \
    X(AGAIN, -13, "try again")                                               \
    X(STATE, -14, "operation not valid in this state")                       \
    X(AUTH, -15, "authentication failed")                                    \
    X(UNSUPPORTED, -16, "not supported")

typedef enum {
#define LURAY_ERRNO_ENUM(name, value, msg) LURAY_E##name = (value),
    LURAY_ERRNO_MAP(LURAY_ERRNO_ENUM)
#undef LURAY_ERRNO_ENUM
} luray_errno_t;

#endif
