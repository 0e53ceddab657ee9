/* A directory tree packed into one byte blob (a job's working dir on its way to the head), and
 * unpacked again into a fresh directory without ever writing outside it. */
#ifndef LURAY_CORE_PACK_H
#define LURAY_CORE_PACK_H

#include <stddef.h>
#include <stdint.h>

/* The blob, all integers little-endian:
 *   "LRP1" | u32 count | count entries
 *   entry: u8 type | u32 path_len | path (relative, '/'-separated, no NUL) | u32 mode | u64 size
 *          | size bytes (files only; a folder's size is 0)
 * Entries come in a fixed order (each folder's names sorted bytewise, a folder before what it
 * holds), and modes are normalised (folders 0755, files 0755 when any x bit is set, else 0644),
 * so the same tree packs to the same bytes, and the same hash, on every machine. */
#define LURAY_PACK_MAGIC "LRP1"
/* Entry types; a symbolic link has a number only so that unpacking can name what it refuses. */
enum { LURAY_PACK_FILE = 1, LURAY_PACK_DIR = 2, LURAY_PACK_SYMLINK = 3 };

/* Total bytes of file content a pack may hold when the caller passes limit 0. */
#define LURAY_PACK_DEFAULT_LIMIT (512ull << 20)
/* Files larger than this are left out (with a warning in the log), not packed. */
#define LURAY_PACK_FILE_MAX (256ull << 20)
/* luray_pack_hash's text: 16 bytes of BLAKE2b in hex, and the NUL. */
#define LURAY_PACK_HASH_HEX 33

/* Packs the tree under dir into *out (malloc'd; free() it) of *len bytes. Leaves out every `.git`
 * entry; refuses symbolic links and special files. LURAY_ETOOBIG when the files' bytes would pass
 * limit (0: LURAY_PACK_DEFAULT_LIMIT), err naming the file that broke it. */
int luray_pack_dir(const char *dir, uint64_t limit, uint8_t **out, size_t *len, char *err,
                   size_t errlen);

/* Unpacks a blob into target_dir, which must not exist yet (its parent must; it is made mode
 * 0700) or be an empty folder. Refuses absolute paths, `.` and `..`, empty components,
 * duplicates, entries whose folder is not in the blob or that would pass through a link, and
 * truncated or garbled input (LURAY_EPROTO, err naming the entry). On any failure nothing of the
 * blob stays behind. */
int luray_pack_unpack(const uint8_t *p, size_t len, const char *target_dir, char *err,
                      size_t errlen);

/* The blob's hash as 32 hex characters: nodes cache unpacked trees by it. */
int luray_pack_hash(const uint8_t *p, size_t len, char out[LURAY_PACK_HASH_HEX]);

#endif
