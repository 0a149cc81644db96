// Shared prelude of every Dash kernel.
//
// The kernels are written once and built two ways:
//  * for the GPU by NVRTC (dash-gpu prepends this file and the other headers
//    to each kernel source at run time, with DASH_SINGLE_SOURCE defined);
//  * for the host by the C++ compiler with DASH_HOST_EMU defined (dash-gpu's
//    build script, feature `host-emu`), so that the very same device code is
//    checked bit for bit against dash-core on machines without a GPU.
//
// The macros below are the whole difference between the two builds. A kernel
// is a sequence of *phases* (`THREADS(n) { ... }`) separated by `SYNC()`; on
// the device each thread runs its own iteration of every phase, in the
// emulation a loop runs all `n` threads of a phase before the next phase
// starts, which is exactly the guarantee `__syncthreads()` gives. Values a
// thread keeps across phases live in `PRIVATE` storage (a register on the
// device, one slot per thread in the emulation). Grids are loops over blocks
// in the emulation (`BLOCKS_BEGIN` / `BLOCKS_END`).
#ifndef DASH_COMMON_CUH
#define DASH_COMMON_CUH

#ifdef DASH_HOST_EMU
#include <stdint.h>
#define DEVICE static inline
#define KERNEL extern "C"
#define GRID_PARAMS unsigned dash_grid_x, unsigned dash_grid_y, unsigned dash_grid_z,
#define BLOCKS_BEGIN                                                        \
    for (unsigned dash_bz = 0; dash_bz < dash_grid_z; ++dash_bz)            \
        for (unsigned dash_by = 0; dash_by < dash_grid_y; ++dash_by)        \
            for (unsigned dash_bx = 0; dash_bx < dash_grid_x; ++dash_bx) {
#define BLOCKS_END }
#define BLOCK_X dash_bx
#define BLOCK_Y dash_by
#define BLOCK_Z dash_bz
#define SHARED
#define CONSTANT static const
#define THREADS(n) for (unsigned tid = 0; tid < (unsigned)(n); ++tid)
#define SYNC() ((void)0)
#define PRIVATE(type, name, n) type name[n]
#define PRIV(name) name[tid]
DEVICE uint64_t dash_mulhi64(uint64_t a, uint64_t b) {
    return (uint64_t)(((unsigned __int128)a * b) >> 64);
}
#else
// NVRTC has no system headers: the fixed-width types it needs.
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#define DEVICE __device__ __forceinline__
#define KERNEL extern "C" __global__
#define GRID_PARAMS
#define BLOCKS_BEGIN {
#define BLOCKS_END }
#define BLOCK_X blockIdx.x
#define BLOCK_Y blockIdx.y
#define BLOCK_Z blockIdx.z
#define SHARED __shared__
#define CONSTANT __constant__
#define THREADS(n) for (unsigned tid = threadIdx.x, dash_once = 1; dash_once; dash_once = 0)
#define SYNC() __syncthreads()
#define PRIVATE(type, name, n) type name
#define PRIV(name) name
DEVICE uint64_t dash_mulhi64(uint64_t a, uint64_t b) {
    return __umul64hi(a, b);
}
#endif

// Largest label: 128 digits (p = 2). Mirrors dash_core::MAX_DIGITS.
#define DASH_MAX_DIGITS 128

// A 128-bit block as two little-endian 64-bit halves, like dash-core's
// `Block(u128)`.
struct Block128 {
    uint64_t lo;
    uint64_t hi;
};

// r mod p for r < 2p, without a branch.
DEVICE uint32_t dash_reduce_once(uint32_t r, uint32_t p) {
    uint32_t t = r - p;
    uint32_t mask = 0u - (t >> 31);
    return t + (p & mask);
}

// dash_core::Label::to_block: sum_i d_i p^i, exact in 128 bits (Horner from
// the top digit; the value is below p^n <= 2^128).
DEVICE Block128 dash_pack(const uint16_t* d, uint32_t n, uint32_t p) {
    uint64_t lo = 0, hi = 0;
    for (int i = (int)n - 1; i >= 0; --i) {
        uint64_t lo_p = lo * p;
        uint64_t carry = dash_mulhi64(lo, p);
        uint64_t new_lo = lo_p + d[i];
        carry += new_lo < lo_p;
        hi = hi * p + carry;
        lo = new_lo;
    }
    Block128 b = {lo, hi};
    return b;
}

// dash_core::Label::from_block: the n base-p digits of `v`; returns 0 (and
// zero digits) when v >= p^n, i.e. `v` packs no label. Evaluator side only
// (it stops early on zero limbs: variable time, fine for public values).
//
// Long division of four 32-bit limbs by p per digit, each step by a
// multiply-high with m = floor((2^64 - 1) / p) + 1 instead of a 64-bit
// division (slow on a GPU): the partial dividend is below p·2^32 <= 2^44,
// where floor(cur·m / 2^64) = floor(cur / p) exactly (the error is below
// cur / 2^64 < 2^-20, the fractional part of cur / p at most 1 - 2^-12).
DEVICE int dash_unpack(Block128 v, uint32_t n, uint32_t p, uint16_t* out) {
    uint64_t m = ~0ull / p + 1;
    uint64_t limb[4] = {v.hi >> 32, v.hi & 0xffffffffull, v.lo >> 32, v.lo & 0xffffffffull};
    uint32_t top = 0;  // limbs above `top` are zero
    while (top < 4 && limb[top] == 0) ++top;
    for (uint32_t i = 0; i < n; ++i) {
        uint64_t r = 0;
        for (uint32_t j = top; j < 4; ++j) {
            uint64_t cur = (r << 32) | limb[j];
            uint64_t q = dash_mulhi64(cur, m);
            r = cur - q * p;
            limb[j] = q;
        }
        out[i] = (uint16_t)r;
        while (top < 4 && limb[top] == 0) ++top;
    }
    if (top < 4) {
        for (uint32_t i = 0; i < n; ++i) out[i] = 0;
        return 0;
    }
    return 1;
}

// dash_core::Label::from_hash: the high half gives digits [0, ceil(n/2)),
// the low half digits [ceil(n/2), n), each by repeated multiplication by p
// (the digit is the carry out of the 64-bit fraction).
DEVICE void dash_from_hash(Block128 h, uint32_t n, uint32_t p, uint16_t* out) {
    uint32_t first = (n + 1) / 2;
    uint32_t pairs = n / 2;
    uint64_t hi = h.hi, lo = h.lo;
    for (uint32_t k = 0; k < pairs; ++k) {
        out[k] = (uint16_t)dash_mulhi64(hi, p);
        hi = hi * p;
        out[first + k] = (uint16_t)dash_mulhi64(lo, p);
        lo = lo * p;
    }
    if (first > pairs) out[first - 1] = (uint16_t)dash_mulhi64(hi, p);
}

#endif
