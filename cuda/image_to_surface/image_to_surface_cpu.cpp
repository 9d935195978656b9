// CPU kernels of the image -> surface transform. Plain C++; threads are supplied by the caller,
// which splits [begin, end) of the work items (see image_to_surface.h) across workers.
#include <algorithm>

#include "image_to_surface.h"
#include "quad.h"

namespace ntdm {

template <typename T>
void i2s_forward_cpu(const T* feat, const T* uv, const uint8_t* mask, I2SShape sh, T seam,
                     int64_t band_h, T* accum, T* weight, int64_t begin, int64_t end) {
  const int64_t bands = (sh.Q + band_h - 1) / band_h;
  const int64_t C = sh.C;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t n = item / bands, band = item % bands;
    const int64_t row0 = band * band_h, row1 = std::min(sh.Q, row0 + band_h) - 1;
    for (int64_t i = 0; i + 1 < sh.H; ++i) {
      for (int64_t j = 0; j + 1 < sh.W; ++j) {
        I2SQuad<T> q;
        if (!i2s_load_quad(uv, mask, sh, seam, n, i, j, &q)) continue;
        const int64_t y0 = std::max(q.y0, row0), y1 = std::min(q.y1, row1);
        if (y0 > y1) continue;
        const T* f[4];
        for (int k = 0; k < 4; ++k) f[k] = feat + q.pix[k] * C;
        for (int64_t y = y0; y <= y1; ++y) {
          for (int64_t x = q.x0; x <= q.x1; ++x) {
            T s, t, det;
            if (!i2s_solve(q, x, y, &s, &t, &det)) continue;
            T w[4];
            i2s_weights(s, t, w);
            const int64_t texel = (n * sh.Q + y) * sh.Q + x;
            T* out = accum + texel * C;
            for (int64_t c = 0; c < C; ++c)
              out[c] += w[0] * f[0][c] + w[1] * f[1][c] + w[2] * f[2][c] + w[3] * f[3][c];
            weight[texel] += w[0] + w[1] + w[2] + w[3];
          }
        }
      }
    }
  }
}

template <typename T>
void i2s_backward_cpu(const T* feat, const T* uv, const uint8_t* mask, const T* grad_accum,
                      I2SShape sh, T seam, int parity, T* grad_feat, T* grad_uv, int64_t begin,
                      int64_t end) {
  const int64_t quad_rows = sh.H - 1;
  const int64_t rows_par = (quad_rows - parity + 1) / 2;  // rows i = parity, parity+2, ...
  const int64_t C = sh.C;
  const T Qf = T(sh.Q);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t n = item / rows_par, i = 2 * (item % rows_par) + parity;
    for (int64_t j = 0; j + 1 < sh.W; ++j) {
      I2SQuad<T> q;
      if (!i2s_load_quad(uv, mask, sh, seam, n, i, j, &q)) continue;
      const T* f[4];
      T* gf[4];
      for (int k = 0; k < 4; ++k) {
        f[k] = feat + q.pix[k] * C;
        gf[k] = grad_feat + q.pix[k] * C;
      }
      T gpx[4] = {0, 0, 0, 0}, gpy[4] = {0, 0, 0, 0};
      for (int64_t y = q.y0; y <= q.y1; ++y) {
        for (int64_t x = q.x0; x <= q.x1; ++x) {
          T s, t, det;
          if (!i2s_solve(q, x, y, &s, &t, &det)) continue;
          T w[4];
          i2s_weights(s, t, w);
          const T* g = grad_accum + ((n * sh.Q + y) * sh.Q + x) * C;
          T dw[4] = {0, 0, 0, 0};
          for (int64_t c = 0; c < C; ++c) {
            const T gc = g[c];
            dw[0] += gc * f[0][c];
            dw[1] += gc * f[1][c];
            dw[2] += gc * f[2][c];
            dw[3] += gc * f[3][c];
            gf[0][c] += w[0] * gc;
            gf[1][c] += w[1] * gc;
            gf[2][c] += w[2] * gc;
            gf[3][c] += w[3] * gc;
          }
          T gx[4], gy[4];
          i2s_corner_grads(q, s, t, det, dw, gx, gy);
          for (int k = 0; k < 4; ++k) {
            gpx[k] += gx[k];
            gpy[k] += gy[k];
          }
        }
      }
      for (int k = 0; k < 4; ++k) {
        grad_uv[2 * q.pix[k]] += gpx[k] * Qf;
        grad_uv[2 * q.pix[k] + 1] += gpy[k] * Qf;
      }
    }
  }
}

#define NTDM_I2S_INSTANTIATE(T)                                                                  \
  template void i2s_forward_cpu<T>(const T*, const T*, const uint8_t*, I2SShape, T, int64_t, T*, \
                                   T*, int64_t, int64_t);                                       \
  template void i2s_backward_cpu<T>(const T*, const T*, const uint8_t*, const T*, I2SShape, T,   \
                                    int, T*, T*, int64_t, int64_t);
NTDM_I2S_INSTANTIATE(float)
NTDM_I2S_INSTANTIATE(double)

}  // namespace ntdm
