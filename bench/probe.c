/* Counters for bench/profile_step.py, preloaded into its child process (LD_PRELOAD, Linux/glibc):
 *
 * - the heap allocations of at least 4 KiB (NumPy's array buffers): glibc's malloc, calloc and
 *   realloc wrapped; small requests (Python objects, array headers) are left out;
 * - the time spent in BLAS (NumPy's bundled OpenBLAS: its cblas gemm, gemv, syrk and dot, float
 *   and double), wrapped by name and forwarded with dlsym(RTLD_NEXT): the step's GEMM time,
 *   exactly, summed over the threads that call BLAS.
 *
 * They count while tg_probe_on is set; Python reads and sets them through ctypes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

long tg_alloc_count = 0;
long tg_alloc_bytes = 0;
long tg_blas_ns = 0;
long tg_blas_calls = 0;
int tg_probe_on = 0;

static void note(size_t n) {
    if (tg_probe_on && n >= 4096) {
        __atomic_add_fetch(&tg_alloc_count, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&tg_alloc_bytes, (long)n, __ATOMIC_RELAXED);
    }
}

void *malloc(size_t n) { note(n); return __libc_malloc(n); }
void *calloc(size_t k, size_t n) { note(k * n); return __libc_calloc(k, n); }
void *realloc(void *p, size_t n) { note(n); return __libc_realloc(p, n); }

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void blas_done(long t0) {
    if (tg_probe_on) {
        __atomic_add_fetch(&tg_blas_ns, now_ns() - t0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&tg_blas_calls, 1, __ATOMIC_RELAXED);
    }
}

/* NumPy's OpenBLAS (64-bit integers, a scipy_ prefix and a 64_ suffix) is loaded by NumPy's
 * extension module with RTLD_LOCAL, so RTLD_NEXT does not see it: find it among the loaded
 * objects by name and look the symbol up there. */
static int find_openblas(struct dl_phdr_info *info, size_t size, void *out) {
    (void)size;
    if (info->dlpi_name && strstr(info->dlpi_name, "libscipy_openblas")) {
        *(void **)out = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
        return 1;
    }
    return 0;
}

static void *openblas_symbol(const char *name) {
    static void *lib;
    if (!lib) dl_iterate_phdr(find_openblas, &lib);
    return lib ? dlsym(lib, name) : NULL;
}

/* A wrapper that times the call and forwards it to OpenBLAS (looked up on first use). */
#define WRAP(name, params, args)                                   \
    void name params {                                             \
        static void(*real) params;                                 \
        if (!real) real = (void(*) params)openblas_symbol(#name);  \
        long t0 = now_ns();                                        \
        real args;                                                 \
        blas_done(t0);                                             \
    }

WRAP(scipy_cblas_sgemm64_,
     (int o, int ta, int tb, long m, long n, long k, float alpha, const float *a, long lda,
      const float *b, long ldb, float beta, float *c, long ldc),
     (o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
WRAP(scipy_cblas_dgemm64_,
     (int o, int ta, int tb, long m, long n, long k, double alpha, const double *a, long lda,
      const double *b, long ldb, double beta, double *c, long ldc),
     (o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
WRAP(scipy_cblas_sgemv64_,
     (int o, int t, long m, long n, float alpha, const float *a, long lda, const float *x,
      long incx, float beta, float *y, long incy),
     (o, t, m, n, alpha, a, lda, x, incx, beta, y, incy))
WRAP(scipy_cblas_dgemv64_,
     (int o, int t, long m, long n, double alpha, const double *a, long lda, const double *x,
      long incx, double beta, double *y, long incy),
     (o, t, m, n, alpha, a, lda, x, incx, beta, y, incy))
WRAP(scipy_cblas_ssyrk64_,
     (int o, int u, int t, long n, long k, float alpha, const float *a, long lda, float beta,
      float *c, long ldc),
     (o, u, t, n, k, alpha, a, lda, beta, c, ldc))

float scipy_cblas_sdot64_(long n, const float *x, long incx, const float *y, long incy) {
    static float (*real)(long, const float *, long, const float *, long);
    if (!real) real = (float (*)(long, const float *, long, const float *, long))
                          openblas_symbol("scipy_cblas_sdot64_");
    long t0 = now_ns();
    float r = real(n, x, incx, y, incy);
    blas_done(t0);
    return r;
}
