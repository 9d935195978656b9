// CPU rasterizer: faces are binned by the rows their screen bounding box covers, then every band of
// rows visits only its faces and, for each, only the pixels inside the face's box (PyTorch3D's CPU
// path tests every face at every pixel).
#include <algorithm>
#include <limits>
#include <vector>

#include "rasterize.h"

namespace ntdm {

template <typename T>
void raster_boxes_cpu(const T* verts, const int64_t* faces, RasterShape sh, RasterOpts o,
                      FaceBox* boxes, int64_t begin, int64_t end) {
  const T blur = T(o.blur);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t n = item / sh.F, f = item % sh.F;
    FaceVerts<T> fv;
    FaceBox box{1, 0, 1, 0};
    FaceBox b;
    if (load_face(verts, faces, sh, n, f, o.cull, &fv) && face_box(fv, sh, blur, &b)) box = b;
    boxes[item] = box;
  }
}

void raster_bin_count_cpu(const FaceBox* boxes, RasterShape sh, int64_t band_h, int64_t* counts,
                          int64_t begin, int64_t end) {
  const int64_t B = (sh.H + band_h - 1) / band_h;
  for (int64_t n = begin; n < end; ++n) {
    int64_t* c = counts + n * B;
    std::fill(c, c + B, int64_t(0));
    const FaceBox* bx = boxes + n * sh.F;
    for (int64_t f = 0; f < sh.F; ++f) {
      if (bx[f].x0 > bx[f].x1) continue;
      for (int64_t b = bx[f].y0 / band_h; b <= bx[f].y1 / band_h; ++b) ++c[b];
    }
  }
}

void raster_bin_fill_cpu(const FaceBox* boxes, RasterShape sh, int64_t band_h, const int64_t* offsets,
                         int32_t* lists, int64_t begin, int64_t end) {
  const int64_t B = (sh.H + band_h - 1) / band_h;
  std::vector<int64_t> cursor(B);
  for (int64_t n = begin; n < end; ++n) {
    for (int64_t b = 0; b < B; ++b) cursor[b] = offsets[n * B + b];
    const FaceBox* bx = boxes + n * sh.F;
    for (int64_t f = 0; f < sh.F; ++f) {
      if (bx[f].x0 > bx[f].x1) continue;
      for (int64_t b = bx[f].y0 / band_h; b <= bx[f].y1 / band_h; ++b) lists[cursor[b]++] = (int32_t)f;
    }
  }
}

template <typename T>
void raster_bands_cpu(const T* verts, const int64_t* faces, RasterShape sh, RasterOpts o,
                      const FaceBox* boxes, int64_t band_h, const int64_t* offsets,
                      const int32_t* lists, int64_t* pix_to_face, int64_t begin, int64_t end) {
  const int64_t B = (sh.H + band_h - 1) / band_h;
  const int K = (int)sh.K;
  const T blur2 = T(o.blur * o.blur);
  std::vector<T> zs(band_h * sh.W * K);
  std::vector<int> count(band_h * sh.W);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t n = item / B, band = item % B;
    const int64_t r0 = band * band_h, r1 = std::min(sh.H, r0 + band_h);  // rows [r0, r1)
    int64_t* out = pix_to_face + (n * sh.H + r0) * sh.W * K;
    std::fill(out, out + (r1 - r0) * sh.W * K, int64_t(-1));
    std::fill(count.begin(), count.end(), 0);
    const FaceBox* bx = boxes + n * sh.F;
    for (int64_t li = offsets[item]; li < offsets[item + 1]; ++li) {
      const int64_t f = lists[li];
      const FaceBox& box = bx[f];
      FaceVerts<T> fv;
      load_face(verts, faces, sh, n, f, o.cull, &fv);  // valid: it has a box
      const int64_t y0 = std::max<int64_t>(box.y0, r0), y1 = std::min<int64_t>(box.y1, r1 - 1);
      for (int64_t y = y0; y <= y1; ++y) {
        const T py = T(y) + T(0.5);
        for (int64_t x = box.x0; x <= box.x1; ++x) {
          T z;
          if (!pixel_test(fv, T(x) + T(0.5), py, o, blur2, &z)) continue;
          const int64_t p = (y - r0) * sh.W + x;
          insert_k(zs.data() + p * K, out + p * K, &count[p], K, z, f);
        }
      }
    }
  }
}

template void raster_boxes_cpu<float>(const float*, const int64_t*, RasterShape, RasterOpts, FaceBox*,
                                      int64_t, int64_t);
template void raster_boxes_cpu<double>(const double*, const int64_t*, RasterShape, RasterOpts, FaceBox*,
                                       int64_t, int64_t);
template void raster_bands_cpu<float>(const float*, const int64_t*, RasterShape, RasterOpts,
                                      const FaceBox*, int64_t, const int64_t*, const int32_t*, int64_t*,
                                      int64_t, int64_t);
template void raster_bands_cpu<double>(const double*, const int64_t*, RasterShape, RasterOpts,
                                       const FaceBox*, int64_t, const int64_t*, const int32_t*, int64_t*,
                                       int64_t, int64_t);

}  // namespace ntdm
