// Linear layers mod p on label digits: 2-D convolution (stride, zero
// padding) as an implicit, tiled integer GEMM. A dense layer is the same
// kernel on a 1×1 image (inputs = channels, 1×1 kernel).
//
// Per residue p the output label digits are
//   y[oc][pos][d] = ( Σ_k w[oc][k] · X[k][pos·n + d]  +  b[oc] · one[d] ) mod p
// where k = (ic, ky, kx) runs over the taps, X is the im2col view of the
// input labels (zero where the window hangs over the padding) and `one` is
// this party's one-wire label. This is exactly what dash-host's CPU kernels
// compute; weights and biases arrive reduced mod p.
//
// Tiling: a block computes a 16 (output channels) × 16 (columns: position
// and digit) tile of Y, staging 16×32 weights and 32×16 gathered inputs in
// shared memory per step over k. Products are below p² < 2^24 and sums run in
// 64 bits, so one reduction per output digit is exact for any layer size.
#ifndef DASH_SINGLE_SOURCE
#include "common.cuh"
#endif

#define DASH_TILE_R 16
#define DASH_TILE_C 16
#define DASH_TILE_K 32
#define DASH_LINEAR_THREADS (DASH_TILE_R * DASH_TILE_C)

// The input digit at (tap k, column col) of the im2col view, 0 in the padding.
DEVICE uint32_t dash_conv_gather(const uint16_t* x, uint32_t k, uint32_t col, uint32_t n, uint32_t C, uint32_t H,
                                 uint32_t W, uint32_t OW, uint32_t KH, uint32_t KW, uint32_t SH, uint32_t SW,
                                 uint32_t top, uint32_t left) {
    uint32_t taps = KH * KW;
    uint32_t ic = k / taps;
    uint32_t ky = (k / KW) % KH;
    uint32_t kx = k % KW;
    uint32_t pos = col / n;
    uint32_t d = col % n;
    uint32_t r = pos / OW;
    uint32_t c = pos % OW;
    // Unsigned arithmetic: a row above the padding wraps to a huge value and
    // fails the bound check like a row below the image does.
    uint32_t iy = r * SH + ky - top;
    uint32_t ix = c * SW + kx - left;
    if (ic >= C || iy >= H || ix >= W) return 0;
    return x[((uint64_t)(ic * H + iy) * W + ix) * n + d];
}

// y (OC × OH·OW × n digits) from x (C × H × W × n digits), w (OC × C·KH·KW),
// bias (OC), one (n). Grid: (ceil(OH·OW·n / 16), ceil(OC / 16)); 256 threads.
KERNEL void dash_conv2d_mod_p(GRID_PARAMS const uint16_t* x, const uint16_t* w, const uint16_t* bias,
                              const uint16_t* one, uint16_t* y, uint32_t p, uint32_t n, uint32_t OC, uint32_t C,
                              uint32_t H, uint32_t W, uint32_t OH, uint32_t OW, uint32_t KH, uint32_t KW, uint32_t SH,
                              uint32_t SW, uint32_t top, uint32_t left) {
    BLOCKS_BEGIN
    SHARED uint32_t ws[DASH_TILE_R][DASH_TILE_K];
    SHARED uint32_t xs[DASH_TILE_K][DASH_TILE_C + 1];
    PRIVATE(uint64_t, acc, DASH_LINEAR_THREADS);
    const uint32_t K = C * KH * KW;
    const uint32_t cols = OH * OW * n;
    const uint32_t row0 = BLOCK_Y * DASH_TILE_R;
    const uint32_t col0 = BLOCK_X * DASH_TILE_C;
    THREADS(DASH_LINEAR_THREADS) { PRIV(acc) = 0; }
    for (uint32_t k0 = 0; k0 < K; k0 += DASH_TILE_K) {
        THREADS(DASH_LINEAR_THREADS) {
            // 512 weights and 512 inputs per step: two of each per thread.
            for (uint32_t e = tid; e < DASH_TILE_R * DASH_TILE_K; e += DASH_LINEAR_THREADS) {
                uint32_t r = e / DASH_TILE_K, kk = e % DASH_TILE_K;
                uint32_t row = row0 + r, k = k0 + kk;
                ws[r][kk] = (row < OC && k < K) ? w[(uint64_t)row * K + k] : 0;
            }
            for (uint32_t e = tid; e < DASH_TILE_K * DASH_TILE_C; e += DASH_LINEAR_THREADS) {
                uint32_t kk = e / DASH_TILE_C, cc = e % DASH_TILE_C;
                uint32_t col = col0 + cc, k = k0 + kk;
                xs[kk][cc] = (col < cols && k < K)
                                 ? dash_conv_gather(x, k, col, n, C, H, W, OW, KH, KW, SH, SW, top, left)
                                 : 0;
            }
        }
        SYNC();
        THREADS(DASH_LINEAR_THREADS) {
            uint32_t r = tid / DASH_TILE_C, cc = tid % DASH_TILE_C;
            uint64_t s = 0;
            for (uint32_t kk = 0; kk < DASH_TILE_K; ++kk) s += ws[r][kk] * xs[kk][cc];
            PRIV(acc) += s;
        }
        SYNC();
    }
    THREADS(DASH_LINEAR_THREADS) {
        uint32_t row = row0 + tid / DASH_TILE_C, col = col0 + tid % DASH_TILE_C;
        if (row < OC && col < cols) {
            uint64_t v = PRIV(acc) + (uint64_t)bias[row] * one[col % n];
            y[(uint64_t)row * cols + col] = (uint16_t)(v % p);
        }
    }
    BLOCKS_END
}
