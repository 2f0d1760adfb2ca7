/* Flush subnormal results and operands to zero while a kernel runs, restoring the caller's mode afterwards:
   products of tiny attention weights, stencil weights, floored basis values and gradients can be subnormal, which
   costs a microcode assist each on x86; flushing changes a result by less than the smallest normal number
   (1.2e-38 in float32). Use FTZ_BEGIN once at the top of a kernel body and FTZ_END before it returns. */
#ifndef CRYSTALFRAMER_FTZ_H
#define CRYSTALFRAMER_FTZ_H
#if defined(__SSE__)
#include <xmmintrin.h>
#define FTZ_BEGIN const unsigned int csr_ = _mm_getcsr(); _mm_setcsr(csr_ | 0x8040);
#define FTZ_END _mm_setcsr(csr_);
#else
#define FTZ_BEGIN
#define FTZ_END
#endif
#endif
