/* Copying large buffers with several threads: one core's memcpy does not saturate memory. */
#ifndef LURAY_CORE_COPY_H
#define LURAY_CORE_COPY_H

#include <stddef.h>

/* memcpy for non-overlapping buffers; buffers of 32 MiB or more are split over up to 4 threads
 * (no more than the CPUs online). */
void luray_copy(void *dst, const void *src, size_t n);

#endif
