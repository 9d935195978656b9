// Mesh rasterizer: which faces (the K nearest) cover each pixel. Plain C++ shared by the CPU kernel,
// the CUDA kernel (nvcc, no torch headers) and mirrored operation for operation by the torch twin
// (ntdm_cli/render/rasterize.py: _face_pixel_terms) so both backends take the same decisions.
//
// Screen convention: verts (N, V, 3) = (pixel x right, pixel y down, depth > 0 in front); pixel
// (row r, col c) has its centre at (c + 0.5, r + 0.5). faces (F, 3) int64 shared by the N meshes.
// Output pix_to_face (N, H, W, K) int64: face index (not offset by batch), -1 where empty, sorted by
// (depth, face index) ascending.
#pragma once
#include <cmath>
#include <cstdint>

#include "../common.h"

namespace ntdm {

struct RasterShape {
  int64_t N, V, F, H, W, K;
};

struct RasterOpts {
  double blur;     // blur radius, pixels (faces within this distance of a pixel centre count)
  bool perspective;  // perspective-correct barycentrics (and depth)
  bool clip;         // clip barycentrics to the face before computing depth (used with blur)
  bool cull;         // drop back faces (screen-space area > 0: clockwise in world seen from the camera)
};

// Bounding box of the pixels whose centres a face may cover (inclusive), or x0 > x1 when the face is
// skipped (behind the camera, degenerate, culled, non-finite, or off-screen).
struct FaceBox {
  int32_t x0, x1, y0, y1;
};

constexpr int kMaxKCuda = 32;

template <typename T>
struct FaceVerts {
  T x0, y0, z0, x1, y1, z1, x2, y2, z2;
  T area;
};

template <typename T>
NTDM_HD bool load_face(const T* verts, const int64_t* faces, const RasterShape& sh, int64_t n,
                       int64_t f, bool cull, FaceVerts<T>* fv) {
  const int64_t* fi = faces + 3 * f;
  const T* a = verts + (n * sh.V + fi[0]) * 3;
  const T* b = verts + (n * sh.V + fi[1]) * 3;
  const T* c = verts + (n * sh.V + fi[2]) * 3;
  fv->x0 = a[0]; fv->y0 = a[1]; fv->z0 = a[2];
  fv->x1 = b[0]; fv->y1 = b[1]; fv->z1 = b[2];
  fv->x2 = c[0]; fv->y2 = c[1]; fv->z2 = c[2];
  // every vertex strictly in front of the camera (and finite: NaN fails the comparisons)
  if (!(fv->z0 > T(0) && fv->z1 > T(0) && fv->z2 > T(0))) return false;
  if (!(fv->z0 < T(INFINITY) && fv->z1 < T(INFINITY) && fv->z2 < T(INFINITY))) return false;
  const T area = (fv->x1 - fv->x0) * (fv->y2 - fv->y0) - (fv->y1 - fv->y0) * (fv->x2 - fv->x0);
  fv->area = area;
  if (!(std::fabs(area) > T(1e-10) && std::fabs(area) < T(INFINITY))) return false;  // degenerate
  if (cull && area > T(0)) return false;
  return true;
}

template <typename T>
NTDM_HD bool face_box(const FaceVerts<T>& fv, const RasterShape& sh, T blur, FaceBox* box) {
  const T xmin = (fv.x0 < fv.x1 ? (fv.x0 < fv.x2 ? fv.x0 : fv.x2) : (fv.x1 < fv.x2 ? fv.x1 : fv.x2)) - blur;
  const T xmax = (fv.x0 > fv.x1 ? (fv.x0 > fv.x2 ? fv.x0 : fv.x2) : (fv.x1 > fv.x2 ? fv.x1 : fv.x2)) + blur;
  const T ymin = (fv.y0 < fv.y1 ? (fv.y0 < fv.y2 ? fv.y0 : fv.y2) : (fv.y1 < fv.y2 ? fv.y1 : fv.y2)) - blur;
  const T ymax = (fv.y0 > fv.y1 ? (fv.y0 > fv.y2 ? fv.y0 : fv.y2) : (fv.y1 > fv.y2 ? fv.y1 : fv.y2)) + blur;
  // pixel centres c + 0.5 in [xmin, xmax]; clamp in floating point first (huge coordinates)
  const T cx0 = std::ceil(xmin - T(0.5)), cx1 = std::floor(xmax - T(0.5));
  const T cy0 = std::ceil(ymin - T(0.5)), cy1 = std::floor(ymax - T(0.5));
  if (!(cx1 >= T(0) && cy1 >= T(0) && cx0 <= T(sh.W - 1) && cy0 <= T(sh.H - 1))) return false;
  box->x0 = (int32_t)(cx0 > T(0) ? cx0 : T(0));
  box->x1 = (int32_t)(cx1 < T(sh.W - 1) ? cx1 : T(sh.W - 1));
  box->y0 = (int32_t)(cy0 > T(0) ? cy0 : T(0));
  box->y1 = (int32_t)(cy1 < T(sh.H - 1) ? cy1 : T(sh.H - 1));
  return box->x0 <= box->x1 && box->y0 <= box->y1;
}

// Squared distance from p to the segment ab (the torch twin: _segment_dist2).
template <typename T>
NTDM_HD T segment_dist2(T ax, T ay, T bx, T by, T px, T py) {
  const T dx = bx - ax, dy = by - ay;
  const T len2 = dx * dx + dy * dy;
  T t = len2 > T(0) ? ((px - ax) * dx + (py - ay) * dy) / len2 : T(0);
  t = t < T(0) ? T(0) : (t > T(1) ? T(1) : t);
  const T qx = (ax + t * dx) - px, qy = (ay + t * dy) - py;
  return qx * qx + qy * qy;
}

// Does the face cover pixel centre (px, py) (or lie within the blur radius)? Writes its depth there.
template <typename T>
NTDM_HD bool pixel_test(const FaceVerts<T>& fv, T px, T py, const RasterOpts& o, T blur2, T* z_out) {
  const T e0 = (fv.x2 - fv.x1) * (py - fv.y1) - (fv.y2 - fv.y1) * (px - fv.x1);
  const T e1 = (fv.x0 - fv.x2) * (py - fv.y2) - (fv.y0 - fv.y2) * (px - fv.x2);
  const T e2 = (fv.x1 - fv.x0) * (py - fv.y0) - (fv.y1 - fv.y0) * (px - fv.x0);
  if (!(blur2 > T(0))) {
    // early out, before the divisions: l_i = e_i / area >= 0 iff e_i has the sign of area (or is 0;
    // e_i / area cannot underflow to 0 for the pixel-scale values involved)
    const bool outside = fv.area > T(0) ? (e0 < T(0) || e1 < T(0) || e2 < T(0))
                                        : (e0 > T(0) || e1 > T(0) || e2 > T(0));
    if (outside) return false;
  }
  T l0 = e0 / fv.area, l1 = e1 / fv.area, l2 = e2 / fv.area;
  const bool inside = l0 >= T(0) && l1 >= T(0) && l2 >= T(0);
  if (!inside) {
    if (!(blur2 > T(0))) return false;
    T d = segment_dist2(fv.x0, fv.y0, fv.x1, fv.y1, px, py);
    const T d1 = segment_dist2(fv.x1, fv.y1, fv.x2, fv.y2, px, py);
    const T d2 = segment_dist2(fv.x2, fv.y2, fv.x0, fv.y0, px, py);
    d = d1 < d ? d1 : d;
    d = d2 < d ? d2 : d;
    if (!(d < blur2)) return false;
  }
  if (o.clip) {
    l0 = l0 > T(0) ? l0 : T(0);
    l1 = l1 > T(0) ? l1 : T(0);
    l2 = l2 > T(0) ? l2 : T(0);
    const T s = (l0 + l1) + l2;
    l0 = l0 / s; l1 = l1 / s; l2 = l2 / s;
  }
  T b0 = l0, b1 = l1, b2 = l2;
  if (o.perspective) {
    const T w0 = l0 / fv.z0, w1 = l1 / fv.z1, w2 = l2 / fv.z2;
    const T den = (w0 + w1) + w2;
    b0 = w0 / den; b1 = w1 / den; b2 = w2 / den;
  }
  const T z = (b0 * fv.z0 + b1 * fv.z1) + b2 * fv.z2;
  if (!(z > T(0) && z < T(INFINITY))) return false;
  *z_out = z;
  return true;
}

// Insert (z, f) into the K-list sorted by (z, f); count is the number of filled entries.
template <typename T>
NTDM_HD void insert_k(T* zs, int64_t* fs, int* count, int K, T z, int64_t f) {
  int c = *count;
  if (c == K) {
    if (z > zs[K - 1] || (z == zs[K - 1] && f > fs[K - 1])) return;
    c = K - 1;  // drop the farthest
  }
  int i = c;
  while (i > 0 && (z < zs[i - 1] || (z == zs[i - 1] && f < fs[i - 1]))) {
    zs[i] = zs[i - 1];
    fs[i] = fs[i - 1];
    --i;
  }
  zs[i] = z;
  fs[i] = f;
  *count = c + 1;
}

// CPU: three passes over plain arrays; the caller threads over [begin, end) of each pass's items.
// 1. items n*F + f: face boxes (N, F) (x0 > x1 when skipped).
template <typename T>
void raster_boxes_cpu(const T* verts, const int64_t* faces, RasterShape sh, RasterOpts o,
                      FaceBox* boxes, int64_t begin, int64_t end);
// 2. items n: faces per band of `band_h` rows (counts (N, B)), then, given offsets (N*B + 1,
//    exclusive prefix sums of counts), the face lists (faces in increasing index per band).
void raster_bin_count_cpu(const FaceBox* boxes, RasterShape sh, int64_t band_h, int64_t* counts,
                          int64_t begin, int64_t end);
void raster_bin_fill_cpu(const FaceBox* boxes, RasterShape sh, int64_t band_h, const int64_t* offsets,
                         int32_t* lists, int64_t begin, int64_t end);
// 3. items n*B + band: the K nearest faces of every pixel of the band.
template <typename T>
void raster_bands_cpu(const T* verts, const int64_t* faces, RasterShape sh, RasterOpts o,
                      const FaceBox* boxes, int64_t band_h, const int64_t* offsets,
                      const int32_t* lists, int64_t* pix_to_face, int64_t begin, int64_t end);

#ifdef NTDM_WITH_CUDA
template <typename T>
void raster_cuda(const T* verts, const int64_t* faces, RasterShape sh, RasterOpts o, FaceBox* boxes,
                 int64_t* pix_to_face, void* stream);
#endif

}  // namespace ntdm
