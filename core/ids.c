/* Text forms of identifiers. */
#include "ids.h"

#include <stdio.h>

#include "errors.h"

void luray_oid_hex(luray_oid_t id, char out[LURAY_OID_HEX_LEN + 1])
{
    snprintf(out, LURAY_OID_HEX_LEN + 1, "%08x%08x%016llx", id.node, id.proc,
             (unsigned long long)id.seq);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_hex(const char *s, int n, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        int d = hexval(s[i]);
        if (d < 0)
            return LURAY_EINVAL;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return 0;
}

int luray_oid_parse(const char *hex, luray_oid_t *id)
{
    uint64_t node, proc, seq;
    if (strlen(hex) != LURAY_OID_HEX_LEN || parse_hex(hex, 8, &node) ||
        parse_hex(hex + 8, 8, &proc) || parse_hex(hex + 16, 16, &seq))
        return LURAY_EINVAL;
    id->node = (uint32_t)node;
    id->proc = (uint32_t)proc;
    id->seq = seq;
    return 0;
}
