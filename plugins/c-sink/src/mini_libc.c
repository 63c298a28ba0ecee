/* mini_libc.c: the few libc functions a freestanding wasm32 component needs
 * (memory functions and a heap), so c-sink links without wasi-libc and
 * imports nothing but consign:destination/host.
 *
 * The heap: first-fit free list over blocks carved from linear memory above
 * __heap_base, grown with memory.grow. Blocks carry an 8-byte header and are
 * 8-byte aligned (the canonical ABI asks for at most 8). Freed blocks are
 * reused, large free blocks are split; nothing is ever returned to the host
 * (wasm memory cannot shrink). Single-threaded, like every component.
 *
 * Build with -fno-builtin so the compiler does not turn these loops back
 * into calls to themselves. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else if (d > s) {
        d += n;
        s += n;
        while (n--) *--d = *--s;
    }
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}

size_t strlen(const char *s) {
    const char *p = s;
    while (*p) p++;
    return (size_t)(p - s);
}

_Noreturn void abort(void) { __builtin_trap(); }

/* ---- heap ---- */

typedef struct block {
    size_t size;        /* payload bytes (multiple of 8) */
    struct block *next; /* next free block; only meaningful while free */
} block;

#define HEADER 8u
#define PAGE 65536u

extern unsigned char __heap_base;
static uintptr_t heap_start, heap_top, heap_end;
static block *free_list;

static size_t round8(size_t n) { return (n + 7u) & ~(size_t)7u; }

static int grow_to(uintptr_t want) {
    if (want <= heap_end) return 1;
    size_t pages = (want - heap_end + PAGE - 1) / PAGE;
    if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
    heap_end += pages * PAGE;
    return 1;
}

void *malloc(size_t size) {
    if (!heap_start) {
        heap_start = heap_top = ((uintptr_t)&__heap_base + 7u) & ~(uintptr_t)7u;
        heap_end = __builtin_wasm_memory_size(0) * PAGE;
    }
    if (size > SIZE_MAX - 2 * HEADER - 8) return NULL;
    size = round8(size ? size : 8);
    /* first fit in the free list */
    for (block **link = &free_list; *link; link = &(*link)->next) {
        block *b = *link;
        if (b->size < size) continue;
        if (b->size >= size + HEADER + 64) { /* split off the tail */
            block *rest = (block *)((unsigned char *)b + HEADER + size);
            rest->size = b->size - size - HEADER;
            rest->next = b->next;
            b->size = size;
            *link = rest;
        } else {
            *link = b->next;
        }
        return (unsigned char *)b + HEADER;
    }
    uintptr_t at = heap_top;
    if (at + HEADER + size < at || !grow_to(at + HEADER + size)) return NULL;
    heap_top = at + HEADER + size;
    block *b = (block *)at;
    b->size = size;
    return (unsigned char *)b + HEADER;
}

static block *header_of(void *ptr) {
    uintptr_t p = (uintptr_t)ptr;
    /* ignore NULL and the canonical ABI's "empty list" pointers (= align) */
    if (p < heap_start + HEADER || p >= heap_top || (p & 7u)) return NULL;
    return (block *)(p - HEADER);
}

void free(void *ptr) {
    block *b = header_of(ptr);
    if (!b) return;
    b->next = free_list;
    free_list = b;
}

void *realloc(void *ptr, size_t size) {
    block *b = header_of(ptr);
    if (!b) return malloc(size);
    if (size <= b->size) return ptr;
    void *fresh = malloc(size);
    if (!fresh) return NULL;
    memcpy(fresh, ptr, b->size);
    free(ptr);
    return fresh;
}

void *calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    void *p = malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}
