/* Parallel runs of the kernels over atoms on PyTorch's own threads: the library is linked with the OpenMP runtime
   PyTorch has already loaded (the same libgomp.so.1), so a kernel's parallel region reuses PyTorch's team instead
   of competing with it for the cores (Python threads next to PyTorch's spinning OpenMP workers barely ran in
   parallel). Without OpenMP a kernel runs on the range it is given, and the caller splits the work itself. */
#ifndef CRYSTALFRAMER_PARALLEL_H
#define CRYSTALFRAMER_PARALLEL_H
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CF_MAX_PARTS 256

/* Cuts [lo, hi) into `parts` consecutive ranges of about equal cost, where item i costs prefix[i + 1] − prefix[i]
   (prefix sums, e.g. the first row of each atom): cuts[k] is the first item whose prefix reaches k/parts of the
   total. */
static inline void cf_balanced_cuts(const int64_t *prefix, int64_t lo, int64_t hi, int parts, int64_t *cuts) {
    const int64_t base = prefix[lo], total = prefix[hi] - base;
    int64_t i = lo;
    cuts[0] = lo;
    for (int k = 1; k < parts; k++) {
        const int64_t target = base + total * k / parts;
        while (i < hi && prefix[i] < target) i++;
        cuts[k] = i;
    }
    cuts[parts] = hi;
}

/* Set `result` to the OR of CALL, an int expression of a range [c_lo, c_hi) and its index `part`, over ranges of [lo, hi)
   of about equal cost (prefix sums `prefix`), one per thread of the calling thread's OpenMP team (at most
   max_parts ranges: the number of per-range output buffers the caller has). One range when not built with
   OpenMP, inside a parallel region, or with one thread. The ranges depend only on the thread count, so results
   do too (partial sums are added by the caller in range order). */
#ifdef _OPENMP
#define CF_PARALLEL(result, lo, hi, prefix, max_parts, CALL)                                                        \
    do {                                                                                                             \
        const int64_t lo_ = (lo), hi_ = (hi);                                                                        \
        int64_t parts_ = omp_in_parallel() ? 1 : omp_get_max_threads();                                              \
        if (parts_ > (max_parts)) parts_ = (max_parts);                                                              \
        if (parts_ > CF_MAX_PARTS) parts_ = CF_MAX_PARTS;                                                            \
        if (parts_ > hi_ - lo_) parts_ = hi_ - lo_;                                                                  \
        if (parts_ <= 1) {                                                                                           \
            const int64_t part = 0, c_lo = lo_, c_hi = hi_;                                                          \
            (void)part;                                                                                              \
            result = (CALL);                                                                                         \
            break;                                                                                                   \
        }                                                                                                            \
        int64_t cuts_[CF_MAX_PARTS + 1];                                                                             \
        cf_balanced_cuts((prefix), lo_, hi_, (int)parts_, cuts_);                                                    \
        int err_ = 0;                                                                                                \
        _Pragma("omp parallel num_threads((int)parts_) reduction(|:err_)")                                           \
        for (int64_t part = omp_get_thread_num(); part < parts_; part += omp_get_num_threads()) {                   \
            const int64_t c_lo = cuts_[part], c_hi = cuts_[part + 1];                                                \
            if (c_lo < c_hi) err_ |= (CALL);                                                                         \
        }                                                                                                            \
        result = err_;                                                                                               \
    } while (0)
static inline int cf_openmp_threads(void) { return omp_get_max_threads(); }
#else
#define CF_PARALLEL(result, lo, hi, prefix, max_parts, CALL)                                                        \
    do {                                                                                                             \
        const int64_t part = 0, c_lo = (lo), c_hi = (hi);                                                            \
        (void)part;                                                                                                  \
        (void)(prefix);                                                                                              \
        (void)(max_parts);                                                                                           \
        result = (CALL);                                                                                             \
    } while (0)
static inline int cf_openmp_threads(void) { return 0; }
#endif
#endif
