/* The little of <stdlib.h> that the wit-bindgen C bindings and c-sink use,
 * implemented in src/mini_libc.c. No WASI, no libc: the component imports
 * only consign:destination/host. */
#ifndef CSINK_STDLIB_H
#define CSINK_STDLIB_H
#include <stddef.h>

void *malloc(size_t size);
void *calloc(size_t count, size_t size);
void *realloc(void *ptr, size_t size);
void free(void *ptr);
_Noreturn void abort(void);

#endif
