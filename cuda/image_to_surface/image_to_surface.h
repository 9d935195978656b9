// Image -> surface transform (NTDM appendix A.1): plain-pointer kernels, no torch headers.
//
// Layouts (all contiguous):
//   feat   (N, H, W, C)  image features, channel-last
//   uv     (N, H, W, 2)  texture coordinates in [0, 1]; texel x = u*Q - 0.5, y = v*Q - 0.5
//   mask   (N, H, W)     uint8, 1 where the pixel is on the object
//   accum  (N, Q, Q, C)  output: sum over covering quads of the bilinear-inverse-weighted features
//   weight (N, Q, Q)     output: sum of the quad weights per texel (each covering quad adds 1)
// A quad is the 2x2 pixel block (i,j),(i,j+1),(i+1,j+1),(i+1,j); it is used when all four pixels
// are masked and its extent in u and in v is at most `seam` (texture fraction).
#pragma once
#include <cstdint>

namespace ntdm {

struct I2SShape {
  int64_t N, C, H, W, Q;
};

// CPU forward over work items [begin, end): item = n * bands + band, band = rows [band*band_h, ...).
// Items write disjoint texel rows, so any partition of the range across threads is race-free.
template <typename T>
void i2s_forward_cpu(const T* feat, const T* uv, const uint8_t* mask, I2SShape sh, T seam,
                     int64_t band_h, T* accum, T* weight, int64_t begin, int64_t end);

// grad_accum (N, Q, Q, C) is the gradient w.r.t. accum (the caller divides by weight first).
// CPU backward over work items [begin, end): item = n * rows_of_parity + r, quad row i = 2r + parity.
// Quad row i touches pixel rows i and i+1 only, so items of one parity never share pixels.
template <typename T>
void i2s_backward_cpu(const T* feat, const T* uv, const uint8_t* mask,
                      const T* grad_accum, I2SShape sh, T seam, int parity, T* grad_feat,
                      T* grad_uv, int64_t begin, int64_t end);

#ifdef NTDM_WITH_CUDA
// CUDA launchers (stream = cudaStream_t passed as void*). Outputs must be zero-initialised.
template <typename T>
void i2s_forward_cuda(const T* feat, const T* uv, const uint8_t* mask, I2SShape sh, T seam,
                      T* accum, T* weight, void* stream);
template <typename T>
void i2s_backward_cuda(const T* feat, const T* uv, const uint8_t* mask,
                       const T* grad_accum, I2SShape sh, T seam, T* grad_feat, T* grad_uv,
                       void* stream);
#endif

}  // namespace ntdm
