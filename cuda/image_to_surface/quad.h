// Per-quad set-up shared by the CPU and CUDA image->surface kernels.
#pragma once
#include "../common.h"
#include "image_to_surface.h"

namespace ntdm {

template <typename T>
struct I2SQuad {
  T px[4], py[4];        // corners in texel units: (i,j), (i,j+1), (i+1,j+1), (i+1,j)
  int64_t pix[4];        // flat pixel index n*H*W + y*W + x of each corner
  int64_t x0, x1, y0, y1;  // inclusive texel bounding box, clipped to [0, Q-1]; empty if x0 > x1
};

// Loads quad (n, i, j). Returns false when a corner is off the mask, when the quad spans more than
// `seam` of the texture in u or v, or when it covers no texel centre.
template <typename T>
NTDM_HD bool i2s_load_quad(const T* uv, const uint8_t* mask, const I2SShape& sh, T seam, int64_t n,
                           int64_t i, int64_t j, I2SQuad<T>* q) {
  const int64_t base = n * sh.H * sh.W;
  q->pix[0] = base + i * sh.W + j;
  q->pix[1] = base + i * sh.W + j + 1;
  q->pix[2] = base + (i + 1) * sh.W + j + 1;
  q->pix[3] = base + (i + 1) * sh.W + j;
  T u[4], v[4];
  for (int k = 0; k < 4; ++k) {
    if (!mask[q->pix[k]]) return false;
    u[k] = uv[2 * q->pix[k]];
    v[k] = uv[2 * q->pix[k] + 1];
  }
  const T umin = ntdm_min4(u[0], u[1], u[2], u[3]), umax = ntdm_max4(u[0], u[1], u[2], u[3]);
  const T vmin = ntdm_min4(v[0], v[1], v[2], v[3]), vmax = ntdm_max4(v[0], v[1], v[2], v[3]);
  if (!(umax - umin <= seam) || !(vmax - vmin <= seam)) return false;
  const T Qf = T(sh.Q);
  for (int k = 0; k < 4; ++k) {
    q->px[k] = u[k] * Qf - T(0.5);
    q->py[k] = v[k] * Qf - T(0.5);
  }
  T xl = std::ceil(umin * Qf - T(0.5)), xh = std::floor(umax * Qf - T(0.5));
  T yl = std::ceil(vmin * Qf - T(0.5)), yh = std::floor(vmax * Qf - T(0.5));
  xl = xl < T(0) ? T(0) : xl;
  yl = yl < T(0) ? T(0) : yl;
  xh = xh > Qf - 1 ? Qf - 1 : xh;
  yh = yh > Qf - 1 ? Qf - 1 : yh;
  if (xl > xh || yl > yh) return false;
  q->x0 = (int64_t)xl;
  q->x1 = (int64_t)xh;
  q->y0 = (int64_t)yl;
  q->y1 = (int64_t)yh;
  return true;
}

template <typename T>
NTDM_HD bool i2s_solve(const I2SQuad<T>& q, int64_t x, int64_t y, T* s, T* t, T* det) {
  return inverse_bilinear<T>(T(x), T(y), q.px[0], q.py[0], q.px[1], q.py[1], q.px[2], q.py[2],
                             q.px[3], q.py[3], s, t, det);
}

template <typename T>
NTDM_HD void i2s_weights(T s, T t, T w[4]) {
  w[0] = (T(1) - s) * (T(1) - t);
  w[1] = s * (T(1) - t);
  w[2] = s * t;
  w[3] = (T(1) - s) * t;
}

// Given dL/dw_k (k=0..3), returns dL/d(corner k texel position) for the solved (s,t).
template <typename T>
NTDM_HD void i2s_corner_grads(const I2SQuad<T>& q, T s, T t, T det, const T dw[4], T gx[4], T gy[4]) {
  const T dLds = -(T(1) - t) * dw[0] + (T(1) - t) * dw[1] + t * dw[2] - t * dw[3];
  const T dLdt = -(T(1) - s) * dw[0] - s * dw[1] + s * dw[2] + (T(1) - s) * dw[3];
  // J columns: dP/ds = e + g t, dP/dt = f + g s
  const T ex = q.px[1] - q.px[0], ey = q.py[1] - q.py[0];
  const T fx = q.px[3] - q.px[0], fy = q.py[3] - q.py[0];
  const T gxx = q.px[0] - q.px[1] + q.px[2] - q.px[3], gyy = q.py[0] - q.py[1] + q.py[2] - q.py[3];
  const T jsx = ex + gxx * t, jsy = ey + gyy * t;
  const T jtx = fx + gxx * s, jty = fy + gyy * s;
  // d(s,t)/dP_k = -w_k J^{-1}  =>  dL/dP_k = -w_k J^{-T} (dL/ds, dL/dt)
  const T ax = (jty * dLds - jsy * dLdt) / det;
  const T ay = (-jtx * dLds + jsx * dLdt) / det;
  T w[4];
  i2s_weights(s, t, w);
  for (int k = 0; k < 4; ++k) {
    gx[k] = -w[k] * ax;
    gy[k] = -w[k] * ay;
  }
}

}  // namespace ntdm
