// AES-128 (fixed public key) and dash-core's tweakable hash on the device.
//
// `H(t, x) = π(π(x) ⊕ t) ⊕ π(x)` with `π` AES-128 under the key
// "dash-core/tccr/1" (dash_core::hash). Blocks are dash-core's little-endian
// u128s: byte i of the AES state is byte i of the u128, so AES column c is
// the little-endian 32-bit word c of the block.
//
// A one-table (T0) implementation: T1..T3 are byte rotations of T0, which
// keeps the shared-memory footprint at 1 KiB. Table lookups are indexed by
// state bytes, so their timing depends on the data (shared-memory bank
// conflicts): harmless for the evaluator, which holds no secret, but see
// docs/GPU.md before garbling on a shared GPU.
#ifndef DASH_AES_CUH
#define DASH_AES_CUH
#ifndef DASH_SINGLE_SOURCE
#include "common.cuh"
#endif

CONSTANT uint8_t DASH_SBOX[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
    0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
    0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
    0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
    0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
    0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
    0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
    0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
    0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
    0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
    0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
    0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
    0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
    0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
    0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
    0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
};

// dash_core::hash::FIXED_KEY, as bytes.
CONSTANT uint8_t DASH_FIXED_KEY[16] = {'d', 'a', 's', 'h', '-', 'c', 'o', 'r', 'e', '/', 't', 'c', 'c', 'r', '/', '1'};

// What every hashing block keeps in shared memory.
struct AesTables {
    uint32_t t0[256];
    uint32_t sbox[256];
    uint32_t rk[44];
};

DEVICE uint32_t dash_rotl32(uint32_t x, unsigned r) {
    return (x << r) | (x >> (32 - r));
}

DEVICE uint32_t dash_xtime(uint32_t b) {
    return ((b << 1) ^ ((b >> 7) * 0x1b)) & 0xff;
}

// Table entry i, for the threads of a block to fill in parallel.
DEVICE void dash_aes_fill(AesTables* t, unsigned i) {
    uint32_t s = DASH_SBOX[i];
    uint32_t s2 = dash_xtime(s);
    t->sbox[i] = s;
    t->t0[i] = s2 | (s << 8) | (s << 16) | ((s2 ^ s) << 24);
}

// The AES-128 key schedule of `key` (little-endian words, as the state).
DEVICE void dash_aes_expand(AesTables* t, const uint8_t* key) {
    const uint32_t rcon[10] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36};
    for (int i = 0; i < 4; ++i) {
        t->rk[i] = (uint32_t)key[4 * i] | ((uint32_t)key[4 * i + 1] << 8) | ((uint32_t)key[4 * i + 2] << 16) |
                   ((uint32_t)key[4 * i + 3] << 24);
    }
    for (int i = 4; i < 44; ++i) {
        uint32_t temp = t->rk[i - 1];
        if (i % 4 == 0) {
            uint32_t r = (temp >> 8) | (temp << 24);  // RotWord on little-endian bytes
            temp = (uint32_t)DASH_SBOX[r & 0xff] | ((uint32_t)DASH_SBOX[(r >> 8) & 0xff] << 8) |
                   ((uint32_t)DASH_SBOX[(r >> 16) & 0xff] << 16) | ((uint32_t)DASH_SBOX[r >> 24] << 24);
            temp ^= rcon[i / 4 - 1];
        }
        t->rk[i] = t->rk[i - 4] ^ temp;
    }
}

// Fills the tables with `nthreads` threads: a phase of its own, to be
// followed by SYNC().
#define DASH_AES_SETUP(tables, nthreads)                                     \
    THREADS(nthreads) {                                                      \
        for (unsigned dash_i = tid; dash_i < 256; dash_i += (nthreads)) {    \
            dash_aes_fill(&(tables), dash_i);                                \
        }                                                                    \
        if (tid == 0) dash_aes_expand(&(tables), DASH_FIXED_KEY);            \
    }

DEVICE Block128 dash_aes_encrypt(const AesTables* t, Block128 in) {
    const uint32_t* T = t->t0;
    const uint32_t* rk = t->rk;
    uint32_t s0 = (uint32_t)in.lo ^ rk[0];
    uint32_t s1 = (uint32_t)(in.lo >> 32) ^ rk[1];
    uint32_t s2 = (uint32_t)in.hi ^ rk[2];
    uint32_t s3 = (uint32_t)(in.hi >> 32) ^ rk[3];
    for (int r = 1; r < 10; ++r) {
        // Column j takes row k from column j + k (ShiftRows), then MixColumns
        // through the rotated tables.
        uint32_t t0 = T[s0 & 0xff] ^ dash_rotl32(T[(s1 >> 8) & 0xff], 8) ^ dash_rotl32(T[(s2 >> 16) & 0xff], 16) ^
                      dash_rotl32(T[s3 >> 24], 24) ^ rk[4 * r];
        uint32_t t1 = T[s1 & 0xff] ^ dash_rotl32(T[(s2 >> 8) & 0xff], 8) ^ dash_rotl32(T[(s3 >> 16) & 0xff], 16) ^
                      dash_rotl32(T[s0 >> 24], 24) ^ rk[4 * r + 1];
        uint32_t t2 = T[s2 & 0xff] ^ dash_rotl32(T[(s3 >> 8) & 0xff], 8) ^ dash_rotl32(T[(s0 >> 16) & 0xff], 16) ^
                      dash_rotl32(T[s1 >> 24], 24) ^ rk[4 * r + 2];
        uint32_t t3 = T[s3 & 0xff] ^ dash_rotl32(T[(s0 >> 8) & 0xff], 8) ^ dash_rotl32(T[(s1 >> 16) & 0xff], 16) ^
                      dash_rotl32(T[s2 >> 24], 24) ^ rk[4 * r + 3];
        s0 = t0;
        s1 = t1;
        s2 = t2;
        s3 = t3;
    }
    const uint32_t* S = t->sbox;
    uint32_t o0 = (S[s0 & 0xff] | (S[(s1 >> 8) & 0xff] << 8) | (S[(s2 >> 16) & 0xff] << 16) | (S[s3 >> 24] << 24)) ^ rk[40];
    uint32_t o1 = (S[s1 & 0xff] | (S[(s2 >> 8) & 0xff] << 8) | (S[(s3 >> 16) & 0xff] << 16) | (S[s0 >> 24] << 24)) ^ rk[41];
    uint32_t o2 = (S[s2 & 0xff] | (S[(s3 >> 8) & 0xff] << 8) | (S[(s0 >> 16) & 0xff] << 16) | (S[s1 >> 24] << 24)) ^ rk[42];
    uint32_t o3 = (S[s3 & 0xff] | (S[(s0 >> 8) & 0xff] << 8) | (S[(s1 >> 16) & 0xff] << 16) | (S[s2 >> 24] << 24)) ^ rk[43];
    Block128 out = {(uint64_t)o0 | ((uint64_t)o1 << 32), (uint64_t)o2 | ((uint64_t)o3 << 32)};
    return out;
}

// dash_core::FixedKeyHash::hash.
DEVICE Block128 dash_tccr(const AesTables* t, Block128 tweak, Block128 x) {
    Block128 y = dash_aes_encrypt(t, x);
    Block128 m = {y.lo ^ tweak.lo, y.hi ^ tweak.hi};
    Block128 z = dash_aes_encrypt(t, m);
    Block128 out = {y.lo ^ z.lo, y.hi ^ z.hi};
    return out;
}

#endif
