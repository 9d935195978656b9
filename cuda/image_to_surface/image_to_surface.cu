// CUDA kernels of the image -> surface transform: one warp per quad, lanes over channels.
// Accumulation uses atomicAdd (quads overlap on the surface and share pixels in backward).
#include <cuda_runtime.h>

#include "image_to_surface.h"
#include "quad.h"

namespace ntdm {
namespace {

constexpr int kQuadsPerBlock = 4;

template <typename T>
__global__ void i2s_forward_kernel(const T* __restrict__ feat, const T* __restrict__ uv,
                                   const uint8_t* __restrict__ mask, I2SShape sh, T seam,
                                   T* __restrict__ accum, T* __restrict__ weight) {
  const int64_t quads = (sh.H - 1) * (sh.W - 1);
  const int64_t qid = (int64_t)blockIdx.x * kQuadsPerBlock + threadIdx.y;
  if (qid >= sh.N * quads) return;
  const int64_t n = qid / quads, r = qid % quads, i = r / (sh.W - 1), j = r % (sh.W - 1);
  I2SQuad<T> q;
  if (!i2s_load_quad(uv, mask, sh, seam, n, i, j, &q)) return;
  const int64_t C = sh.C;
  for (int64_t y = q.y0; y <= q.y1; ++y) {
    for (int64_t x = q.x0; x <= q.x1; ++x) {
      T s, t, det;
      if (!i2s_solve(q, x, y, &s, &t, &det)) continue;
      T w[4];
      i2s_weights(s, t, w);
      const int64_t texel = (n * sh.Q + y) * sh.Q + x;
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        const T v = w[0] * feat[q.pix[0] * C + c] + w[1] * feat[q.pix[1] * C + c] +
                    w[2] * feat[q.pix[2] * C + c] + w[3] * feat[q.pix[3] * C + c];
        atomicAdd(accum + texel * C + c, v);
      }
      if (threadIdx.x == 0) atomicAdd(weight + texel, w[0] + w[1] + w[2] + w[3]);
    }
  }
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <typename T>
__global__ void i2s_backward_kernel(const T* __restrict__ feat, const T* __restrict__ uv,
                                    const uint8_t* __restrict__ mask,
                                    const T* __restrict__ grad_accum, I2SShape sh, T seam,
                                    T* __restrict__ grad_feat, T* __restrict__ grad_uv) {
  const int64_t quads = (sh.H - 1) * (sh.W - 1);
  const int64_t qid = (int64_t)blockIdx.x * kQuadsPerBlock + threadIdx.y;
  // whole warps stay alive for the shuffles; inactive ones skip the work
  I2SQuad<T> q;
  bool active = qid < sh.N * quads;
  if (active) {
    const int64_t n = qid / quads, r = qid % quads, i = r / (sh.W - 1), j = r % (sh.W - 1);
    active = i2s_load_quad(uv, mask, sh, seam, n, i, j, &q);
  }
  if (!active) return;  // the whole warp shares qid, so it leaves together
  const int64_t n = qid / quads;
  const int64_t C = sh.C;
  T gpx[4] = {0, 0, 0, 0}, gpy[4] = {0, 0, 0, 0};
  for (int64_t y = q.y0; y <= q.y1; ++y) {
    for (int64_t x = q.x0; x <= q.x1; ++x) {
      T s, t, det;
      if (!i2s_solve(q, x, y, &s, &t, &det)) continue;
      T w[4];
      i2s_weights(s, t, w);
      const T* g = grad_accum + ((n * sh.Q + y) * sh.Q + x) * C;
      T dw[4] = {0, 0, 0, 0};
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        const T gc = g[c];
        for (int k = 0; k < 4; ++k) {
          dw[k] += gc * feat[q.pix[k] * C + c];
          atomicAdd(grad_feat + q.pix[k] * C + c, w[k] * gc);
        }
      }
      for (int k = 0; k < 4; ++k) dw[k] = warp_sum(dw[k]);
      T gx[4], gy[4];
      i2s_corner_grads(q, s, t, det, dw, gx, gy);
      for (int k = 0; k < 4; ++k) {
        gpx[k] += gx[k];
        gpy[k] += gy[k];
      }
    }
  }
  if (threadIdx.x == 0) {
    const T Qf = T(sh.Q);
    for (int k = 0; k < 4; ++k) {
      atomicAdd(grad_uv + 2 * q.pix[k], gpx[k] * Qf);
      atomicAdd(grad_uv + 2 * q.pix[k] + 1, gpy[k] * Qf);
    }
  }
}

}  // namespace

template <typename T>
void i2s_forward_cuda(const T* feat, const T* uv, const uint8_t* mask, I2SShape sh, T seam,
                      T* accum, T* weight, void* stream) {
  const int64_t total = sh.N * (sh.H - 1) * (sh.W - 1);
  if (total <= 0) return;
  const dim3 block(32, kQuadsPerBlock);
  const dim3 grid((unsigned)((total + kQuadsPerBlock - 1) / kQuadsPerBlock));
  i2s_forward_kernel<T><<<grid, block, 0, (cudaStream_t)stream>>>(feat, uv, mask, sh, seam, accum,
                                                                  weight);
}

template <typename T>
void i2s_backward_cuda(const T* feat, const T* uv, const uint8_t* mask, const T* grad_accum,
                       I2SShape sh, T seam, T* grad_feat, T* grad_uv, void* stream) {
  const int64_t total = sh.N * (sh.H - 1) * (sh.W - 1);
  if (total <= 0) return;
  const dim3 block(32, kQuadsPerBlock);
  const dim3 grid((unsigned)((total + kQuadsPerBlock - 1) / kQuadsPerBlock));
  i2s_backward_kernel<T><<<grid, block, 0, (cudaStream_t)stream>>>(feat, uv, mask, grad_accum, sh,
                                                                   seam, grad_feat, grad_uv);
}

template void i2s_forward_cuda<float>(const float*, const float*, const uint8_t*, I2SShape, float,
                                      float*, float*, void*);
template void i2s_forward_cuda<double>(const double*, const double*, const uint8_t*, I2SShape,
                                       double, double*, double*, void*);
template void i2s_backward_cuda<float>(const float*, const float*, const uint8_t*, const float*,
                                       I2SShape, float, float*, float*, void*);
template void i2s_backward_cuda<double>(const double*, const double*, const uint8_t*,
                                        const double*, I2SShape, double, double*, double*, void*);

}  // namespace ntdm
