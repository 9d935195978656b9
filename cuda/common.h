// Shared helpers for ntdm's compiled kernels. Plain C++ (no torch headers), usable from
// both the CPU translation units and nvcc (__host__ __device__ when compiled as CUDA).
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define NTDM_HD __host__ __device__ __forceinline__
#else
#define NTDM_HD inline
#endif

namespace ntdm {

// Inverse bilinear interpolation.
//
// The quad has corners a (s=0,t=0), b (s=1,t=0), c (s=1,t=1), d (s=0,t=1):
//   P(s,t) = a + e s + f t + g s t,  e = b-a, f = d-a, g = a-b+c-d.
// Finds (s,t) with P(s,t) = p. Returns true when a solution lies in [0,1]^2 and the Jacobian
// J = [dP/ds, dP/dt] is non-singular there; s, t, and the 2x2 inverse-transpose pieces are written
// out. The roots of k2 t^2 + k1 t + k0 = 0 are taken in the numerically stable form (k0/q first, then
// q/k2), so parallelograms (k2 = 0) need no special case. CPU, CUDA and the torch twin use this order.
template <typename T>
NTDM_HD bool inverse_bilinear(T px, T py, T ax, T ay, T bx, T by, T cx, T cy, T dx, T dy,
                              T* s_out, T* t_out, T* det_out) {
  const T ex = bx - ax, ey = by - ay;
  const T fx = dx - ax, fy = dy - ay;
  const T gx = ax - bx + cx - dx, gy = ay - by + cy - dy;
  const T hx = px - ax, hy = py - ay;
  const T k2 = gx * fy - gy * fx;
  const T k1 = (ex * fy - ey * fx) + (hx * gy - hy * gx);
  const T k0 = hx * ey - hy * ex;
  T disc = k1 * k1 - T(4) * k0 * k2;
  if (!(disc >= T(0))) return false;
  const T sq = std::sqrt(disc);
  const T q = T(-0.5) * (k1 + (k1 >= T(0) ? sq : -sq));
  for (int r = 0; r < 2; ++r) {
    T t;
    if (r == 0) {
      if (q == T(0)) continue;
      t = k0 / q;
    } else {
      if (k2 == T(0)) continue;
      t = q / k2;
    }
    if (!(t >= T(0) && t <= T(1))) continue;
    // s from the projection of (h - f t) onto (e + g t): exact where a solution exists.
    const T mx = ex + gx * t, my = ey + gy * t;
    const T mm = mx * mx + my * my;
    if (!(mm > T(0))) continue;
    const T rx = hx - fx * t, ry = hy - fy * t;
    const T s = (rx * mx + ry * my) / mm;
    if (!(s >= T(0) && s <= T(1))) continue;
    const T scale = mm + fx * fx + fy * fy;
    // Jacobian columns: dP/ds = e + g t, dP/dt = f + g s
    const T jsx = mx, jsy = my;
    const T jtx = fx + gx * s, jty = fy + gy * s;
    const T det = jsx * jty - jtx * jsy;
    if (!(std::fabs(det) > T(1e-9) * scale)) continue;
    *s_out = s;
    *t_out = t;
    *det_out = det;
    return true;
  }
  return false;
}

template <typename T>
NTDM_HD T ntdm_min4(T a, T b, T c, T d) {
  T m = a < b ? a : b;
  m = m < c ? m : c;
  return m < d ? m : d;
}
template <typename T>
NTDM_HD T ntdm_max4(T a, T b, T c, T d) {
  T m = a > b ? a : b;
  m = m > c ? m : c;
  return m > d ? m : d;
}

}  // namespace ntdm
