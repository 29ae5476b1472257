/* Count the heap allocations of at least 4 KiB that a process makes: NumPy's array buffers.
 *
 * Built and preloaded by bench/profile_step.py (LD_PRELOAD); it wraps glibc's malloc, calloc and
 * realloc and adds to two counters while tg_alloc_on is set. Python reads and sets them through
 * ctypes. Small requests (Python objects, array headers) are left out.
 */
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

long tg_alloc_count = 0;
long tg_alloc_bytes = 0;
int tg_alloc_on = 0;

static void note(size_t n) {
    if (tg_alloc_on && n >= 4096) {
        __atomic_add_fetch(&tg_alloc_count, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&tg_alloc_bytes, (long)n, __ATOMIC_RELAXED);
    }
}

void *malloc(size_t n) { note(n); return __libc_malloc(n); }
void *calloc(size_t k, size_t n) { note(k * n); return __libc_calloc(k, n); }
void *realloc(void *p, size_t n) { note(n); return __libc_realloc(p, n); }
