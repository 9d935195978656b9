// torch binding of the rasterizer: argument checks, allocation, threading, CPU/CUDA dispatch.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "../check.h"
#include "rasterize.h"

#ifdef NTDM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace ntdm {
namespace {

constexpr int64_t kBandRows = 16;

at::Tensor rasterize_pix_to_face(const at::Tensor& verts, const at::Tensor& faces, int64_t H, int64_t W,
                                 int64_t K, double blur, bool perspective, bool clip, bool cull) {
  check_float(verts, "verts");
  check_shape(verts, "verts", {-1, -1, 3}, "(N, V, 3) screen (x, y, depth)");
  check_shape(faces, "faces", {-1, 3}, "(F, 3)");
  TORCH_CHECK_TYPE(faces.scalar_type() == at::kLong, "argument 'faces' must be int64, got ",
                   faces.scalar_type());
  check_same(faces, verts, "faces", "verts", false);
  check_contiguous(verts, "verts");
  check_contiguous(faces, "faces");
  TORCH_CHECK_VALUE(H > 0 && W > 0, "argument 'image_size' must be positive, got (", H, ", ", W, ")");
  TORCH_CHECK_VALUE(H < (1 << 30) && W < (1 << 30), "argument 'image_size' is too large");
  TORCH_CHECK_VALUE(K > 0, "argument 'faces_per_pixel' must be positive, got ", K);
  TORCH_CHECK_VALUE(blur >= 0, "argument 'blur_radius' must be >= 0, got ", blur);
  const RasterShape sh{verts.size(0), verts.size(1), faces.size(0), H, W, K};
  if (sh.F > 0) {
    const auto mm = at::aminmax(faces);
    const int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
    TORCH_CHECK_VALUE(lo >= 0 && hi < sh.V, "argument 'faces' indexes vertices ", lo, "..", hi,
                      " but verts has ", sh.V, " vertices");
  }
  TORCH_CHECK_VALUE(sh.F < (int64_t(1) << 31), "argument 'faces' has too many faces");
  auto p2f = at::empty({sh.N, H, W, K}, faces.options());
  if (sh.N == 0) return p2f;
  const RasterOpts o{blur, perspective, clip, cull};
  auto boxes = at::empty({sh.N, sh.F, 4}, faces.options().dtype(at::kInt));
  FaceBox* bx = reinterpret_cast<FaceBox*>(boxes.data_ptr<int32_t>());
  if (verts.is_cuda()) {
#ifdef NTDM_WITH_CUDA
    TORCH_CHECK_VALUE(K <= kMaxKCuda, "argument 'faces_per_pixel' must be <= ", kMaxKCuda,
                      " on CUDA, got ", K);
    const at::cuda::OptionalCUDAGuard guard(verts.device());
    void* stream = at::cuda::getCurrentCUDAStream().stream();
    AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rasterize_cuda", [&] {
      raster_cuda<scalar_t>(verts.data_ptr<scalar_t>(), faces.data_ptr<int64_t>(), sh, o, bx,
                            p2f.data_ptr<int64_t>(), stream);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return p2f;
#else
    TORCH_CHECK(false, "ntdm was built without CUDA kernels; rebuild with a CUDA toolkit");
#endif
  }
  p2f.fill_(-1);
  if (sh.F == 0) return p2f;
  const int64_t B = (H + kBandRows - 1) / kBandRows;
  auto counts = at::empty({sh.N * B + 1}, faces.options());
  int64_t* cnt = counts.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rasterize_boxes_cpu", [&] {
    const scalar_t* v = verts.data_ptr<scalar_t>();
    const int64_t* fc = faces.data_ptr<int64_t>();
    at::parallel_for(0, sh.N * sh.F, 2048, [&](int64_t b, int64_t e) {
      raster_boxes_cpu<scalar_t>(v, fc, sh, o, bx, b, e);
    });
  });
  at::parallel_for(0, sh.N, 1, [&](int64_t b, int64_t e) {
    raster_bin_count_cpu(bx, sh, kBandRows, cnt + 1, b, e);
  });
  // offsets[i] = sum of counts before item i (counts were written shifted by one)
  cnt[0] = 0;
  for (int64_t i = 1; i <= sh.N * B; ++i) cnt[i] += cnt[i - 1];
  const int64_t total = cnt[sh.N * B];
  auto lists = at::empty({std::max<int64_t>(total, 1)}, faces.options().dtype(at::kInt));
  int32_t* ls = lists.data_ptr<int32_t>();
  at::parallel_for(0, sh.N, 1, [&](int64_t b, int64_t e) {
    raster_bin_fill_cpu(bx, sh, kBandRows, cnt, ls, b, e);
  });
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "rasterize_bands_cpu", [&] {
    const scalar_t* v = verts.data_ptr<scalar_t>();
    const int64_t* fc = faces.data_ptr<int64_t>();
    int64_t* out = p2f.data_ptr<int64_t>();
    at::parallel_for(0, sh.N * B, 1, [&](int64_t b, int64_t e) {
      raster_bands_cpu<scalar_t>(v, fc, sh, o, bx, kBandRows, cnt, ls, out, b, e);
    });
  });
  return p2f;
}

}  // namespace

void register_rasterize(pybind11::module& m) {
  m.def("rasterize_pix_to_face", &rasterize_pix_to_face,
        "verts (N,V,3) screen (x, y, depth), faces (F,3) int64, H, W, K, blur_radius (pixels), "
        "perspective_correct, clip_barycentric_coords, cull_backfaces -> pix_to_face (N,H,W,K) int64");
}

}  // namespace ntdm
