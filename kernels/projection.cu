// Projection gates on the device: batched evaluation (and garbling) of
// dash-core's projection gate, bit-identical to dash_core::projection.
//
// One thread per gate. Labels are LabelTensor rows (`n` u16 digits per
// element, element after element); blocks (hash inputs, tweaks, rows) are
// pairs of u64 `(lo, hi)`, little-endian like dash-core's `Block(u128)`.
#ifndef DASH_SINGLE_SOURCE
#include "common.cuh"
#include "aes.cuh"
#endif

// Threads per block of every kernel in this file (the launch must match).
#define DASH_GATE_THREADS 128
// Largest projection input modulus the device garbler takes (its table is
// rotated in thread-local memory).
#define DASH_GARBLE_MAX_INPUT 256

// The raw permutation π on `count` blocks (benchmarks: the AES block rate).
KERNEL void dash_aes_permute(GRID_PARAMS const uint64_t* in, uint64_t* out, uint32_t count) {
    BLOCKS_BEGIN
    SHARED AesTables tables;
    DASH_AES_SETUP(tables, DASH_GATE_THREADS)
    SYNC();
    THREADS(DASH_GATE_THREADS) {
        uint32_t i = BLOCK_X * DASH_GATE_THREADS + tid;
        if (i < count) {
            Block128 x = {in[2 * i], in[2 * i + 1]};
            Block128 y = dash_aes_encrypt(&tables, x);
            out[2 * i] = y.lo;
            out[2 * i + 1] = y.hi;
        }
    }
    BLOCKS_END
}

// H(tweaks[i], in[i]) for every i.
KERNEL void dash_tccr_hash(GRID_PARAMS const uint64_t* tweaks, const uint64_t* in, uint64_t* out, uint32_t count) {
    BLOCKS_BEGIN
    SHARED AesTables tables;
    DASH_AES_SETUP(tables, DASH_GATE_THREADS)
    SYNC();
    THREADS(DASH_GATE_THREADS) {
        uint32_t i = BLOCK_X * DASH_GATE_THREADS + tid;
        if (i < count) {
            Block128 t = {tweaks[2 * i], tweaks[2 * i + 1]};
            Block128 x = {in[2 * i], in[2 * i + 1]};
            Block128 y = dash_tccr(&tables, t, x);
            out[2 * i] = y.lo;
            out[2 * i + 1] = y.hi;
        }
    }
    BLOCKS_END
}

// dash_core::projection::evaluate_batch for `count` gates of input modulus
// `p_in` (`n_in` digits) and output modulus `p_out` (`n_out` digits). Gate
// i's rows are rows[i·(p_in−1) ..]; its output goes to out[i·n_out ..].
// errors[i] is set to 1 where the selected row decrypts to no label
// (tampered material) and left alone otherwise.
KERNEL void dash_projection_eval(GRID_PARAMS const uint16_t* in, uint32_t count, uint32_t p_in, uint32_t n_in,
                                 uint32_t p_out, uint32_t n_out, const uint64_t* tweaks, const uint64_t* rows,
                                 uint16_t* out, uint32_t* errors) {
    BLOCKS_BEGIN
    SHARED AesTables tables;
    DASH_AES_SETUP(tables, DASH_GATE_THREADS)
    SYNC();
    THREADS(DASH_GATE_THREADS) {
        uint32_t g = BLOCK_X * DASH_GATE_THREADS + tid;
        if (g < count) {
            const uint16_t* x = in + (uint64_t)g * n_in;
            uint16_t* y = out + (uint64_t)g * n_out;
            Block128 t = {tweaks[2 * g], tweaks[2 * g + 1]};
            Block128 h = dash_tccr(&tables, t, dash_pack(x, n_in, p_in));
            uint32_t colour = x[0];
            if (colour == 0) {
                dash_from_hash(h, n_out, p_out, y);
            } else {
                const uint64_t* row = rows + 2 * ((uint64_t)g * (p_in - 1) + colour - 1);
                Block128 v = {row[0] ^ h.lo, row[1] ^ h.hi};
                if (!dash_unpack(v, n_out, p_out, y)) errors[g] = 1;
            }
        }
    }
    BLOCKS_END
}

// dash_core::projection::garble for `count` gates that share one table
// `table[0..p_in)` (already reduced mod p_out) and the offsets `delta_in`,
// `delta_out`: gate i has input zero label zero_in[i·n_in ..] and tweak
// tweaks[i]; it writes its p_in − 1 rows to rows[i·(p_in−1) ..] and its
// output zero label to zero_out[i·n_out ..].
//
// As on the CPU, the secret colour `a` of the input zero label only enters
// through masks (the table is rotated by a barrel shifter, one conditional
// rotation per bit of `a`) and multiplications; the walk over the rows is in
// public colour order. The AES tables are not constant-time (docs/GPU.md).
KERNEL void dash_projection_garble(GRID_PARAMS const uint16_t* zero_in, uint32_t count, uint32_t p_in,
                                   uint32_t n_in, uint32_t p_out, uint32_t n_out, const uint16_t* delta_in,
                                   const uint16_t* delta_out, const uint16_t* table, const uint64_t* tweaks,
                                   uint64_t* rows, uint16_t* zero_out) {
    BLOCKS_BEGIN
    SHARED AesTables tables;
    DASH_AES_SETUP(tables, DASH_GATE_THREADS)
    SYNC();
    THREADS(DASH_GATE_THREADS) {
        uint32_t g = BLOCK_X * DASH_GATE_THREADS + tid;
        if (g < count && p_in <= DASH_GARBLE_MAX_INPUT) {
            const uint16_t* a_label = zero_in + (uint64_t)g * n_in;
            uint32_t m = p_in;
            uint32_t a = a_label[0];
            uint16_t rotated[DASH_GARBLE_MAX_INPUT];
            uint16_t scratch[DASH_GARBLE_MAX_INPUT];
            for (uint32_t c = 0; c < m; ++c) rotated[c] = table[c];
            // rotated[c] = table[(c - a) mod m], without a secret index.
            for (uint32_t bit = 0; (1u << bit) < m; ++bit) {
                uint32_t shift = (1u << bit) % m;
                uint16_t mask = (uint16_t)(0u - ((a >> bit) & 1u));
                for (uint32_t c = 0; c < m; ++c) scratch[(c + shift) % m] = rotated[c];
                for (uint32_t c = 0; c < m; ++c) rotated[c] ^= (rotated[c] ^ scratch[c]) & mask;
            }
            // key = A + (−a)·Δ_in: the label of colour 0.
            uint16_t key[DASH_MAX_DIGITS];
            uint32_t neg_a = dash_reduce_once(p_in - a, p_in);
            for (uint32_t d = 0; d < n_in; ++d) key[d] = (uint16_t)((a_label[d] + delta_in[d] * neg_a) % p_in);
            uint16_t r0[DASH_MAX_DIGITS];
            uint16_t row_label[DASH_MAX_DIGITS];
            Block128 t = {tweaks[2 * g], tweaks[2 * g + 1]};
            uint32_t first = rotated[0];
            for (uint32_t c = 0; c < m; ++c) {
                Block128 h = dash_tccr(&tables, t, dash_pack(key, n_in, p_in));
                if (c == 0) {
                    dash_from_hash(h, n_out, p_out, r0);
                } else {
                    uint32_t s = dash_reduce_once(rotated[c] + p_out - first, p_out);
                    for (uint32_t d = 0; d < n_out; ++d) row_label[d] = (uint16_t)((r0[d] + delta_out[d] * s) % p_out);
                    Block128 packed = dash_pack(row_label, n_out, p_out);
                    uint64_t* row = rows + 2 * ((uint64_t)g * (m - 1) + c - 1);
                    row[0] = packed.lo ^ h.lo;
                    row[1] = packed.hi ^ h.hi;
                }
                for (uint32_t d = 0; d < n_in; ++d) key[d] = (uint16_t)dash_reduce_once(key[d] + delta_in[d], p_in);
            }
            // C = R_0 − φ(−a)·Δ_out, so that row c holds C + φ(c − a)·Δ_out.
            uint32_t neg_first = dash_reduce_once(p_out - first, p_out);
            uint16_t* z = zero_out + (uint64_t)g * n_out;
            for (uint32_t d = 0; d < n_out; ++d) z[d] = (uint16_t)((r0[d] + delta_out[d] * neg_first) % p_out);
            // Clear the secrets this thread held (local memory outlives the thread).
            for (uint32_t d = 0; d < DASH_MAX_DIGITS; ++d) {
                key[d] = 0;
                r0[d] = 0;
                row_label[d] = 0;
            }
            for (uint32_t c = 0; c < m; ++c) rotated[c] = 0;
        }
    }
    BLOCKS_END
}
