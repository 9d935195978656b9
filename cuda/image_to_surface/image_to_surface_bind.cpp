// torch binding of the image -> surface transform: checks, layout, threading, dispatch.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "../check.h"
#include "image_to_surface.h"

#ifdef NTDM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace ntdm {
namespace {

constexpr int64_t kBandRows = 4;

I2SShape check_inputs(const at::Tensor& feat, const at::Tensor& uv, const at::Tensor& mask,
                      int64_t Q, double seam) {
  check_float(feat, "features");
  check_shape(feat, "features", {-1, -1, -1, -1}, "(N, H, W, C) channel-last");
  const int64_t N = feat.size(0), H = feat.size(1), W = feat.size(2), C = feat.size(3);
  check_shape(uv, "uv", {N, H, W, 2}, "(N, H, W, 2) matching features");
  check_shape(mask, "mask", {N, H, W}, "(N, H, W) matching features");
  check_same(uv, feat, "uv", "features", true);
  check_same(mask, feat, "mask", "features", false);
  TORCH_CHECK_TYPE(mask.scalar_type() == at::kByte, "argument 'mask' must be uint8, got ",
                   mask.scalar_type());
  check_contiguous(feat, "features");
  check_contiguous(uv, "uv");
  check_contiguous(mask, "mask");
  TORCH_CHECK_VALUE(Q > 0, "argument 'texture_size' must be positive, got ", Q);
  TORCH_CHECK_VALUE(seam > 0, "argument 'seam_threshold' must be positive, got ", seam);
  return I2SShape{N, C, H, W, Q};
}

std::vector<at::Tensor> forward(const at::Tensor& feat, const at::Tensor& uv, const at::Tensor& mask,
                                int64_t Q, double seam) {
  const I2SShape sh = check_inputs(feat, uv, mask, Q, seam);
  auto accum = at::zeros({sh.N, Q, Q, sh.C}, feat.options());
  auto weight = at::zeros({sh.N, Q, Q}, feat.options());
  if (sh.N == 0 || sh.H < 2 || sh.W < 2 || sh.C == 0) return {accum, weight};
  if (feat.is_cuda()) {
#ifdef NTDM_WITH_CUDA
    const at::cuda::OptionalCUDAGuard guard(feat.device());
    void* stream = at::cuda::getCurrentCUDAStream().stream();
    AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "image_to_surface_forward_cuda", [&] {
      i2s_forward_cuda<scalar_t>(feat.data_ptr<scalar_t>(), uv.data_ptr<scalar_t>(),
                                 mask.data_ptr<uint8_t>(), sh, (scalar_t)seam,
                                 accum.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), stream);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {accum, weight};
#else
    TORCH_CHECK(false, "ntdm was built without CUDA kernels; rebuild with a CUDA toolkit");
#endif
  }
  const int64_t bands = (Q + kBandRows - 1) / kBandRows;
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "image_to_surface_forward_cpu", [&] {
    const scalar_t* f = feat.data_ptr<scalar_t>();
    const scalar_t* u = uv.data_ptr<scalar_t>();
    const uint8_t* m = mask.data_ptr<uint8_t>();
    scalar_t* a = accum.data_ptr<scalar_t>();
    scalar_t* w = weight.data_ptr<scalar_t>();
    at::parallel_for(0, sh.N * bands, 1, [&](int64_t b, int64_t e) {
      i2s_forward_cpu<scalar_t>(f, u, m, sh, (scalar_t)seam, kBandRows, a, w, b, e);
    });
  });
  return {accum, weight};
}

std::vector<at::Tensor> backward(const at::Tensor& feat, const at::Tensor& uv,
                                 const at::Tensor& mask, const at::Tensor& grad_accum, int64_t Q,
                                 double seam) {
  const I2SShape sh = check_inputs(feat, uv, mask, Q, seam);
  check_shape(grad_accum, "grad_accum", {sh.N, Q, Q, sh.C}, "(N, Q, Q, C)");
  check_same(grad_accum, feat, "grad_accum", "features", true);
  check_contiguous(grad_accum, "grad_accum");
  auto grad_feat = at::zeros_like(feat);
  auto grad_uv = at::zeros_like(uv);
  if (sh.N == 0 || sh.H < 2 || sh.W < 2 || sh.C == 0) return {grad_feat, grad_uv};
  if (feat.is_cuda()) {
#ifdef NTDM_WITH_CUDA
    const at::cuda::OptionalCUDAGuard guard(feat.device());
    void* stream = at::cuda::getCurrentCUDAStream().stream();
    AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "image_to_surface_backward_cuda", [&] {
      i2s_backward_cuda<scalar_t>(feat.data_ptr<scalar_t>(), uv.data_ptr<scalar_t>(),
                                  mask.data_ptr<uint8_t>(), grad_accum.data_ptr<scalar_t>(), sh,
                                  (scalar_t)seam, grad_feat.data_ptr<scalar_t>(),
                                  grad_uv.data_ptr<scalar_t>(), stream);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {grad_feat, grad_uv};
#else
    TORCH_CHECK(false, "ntdm was built without CUDA kernels; rebuild with a CUDA toolkit");
#endif
  }
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "image_to_surface_backward_cpu", [&] {
    const scalar_t* f = feat.data_ptr<scalar_t>();
    const scalar_t* u = uv.data_ptr<scalar_t>();
    const uint8_t* m = mask.data_ptr<uint8_t>();
    const scalar_t* g = grad_accum.data_ptr<scalar_t>();
    scalar_t* gf = grad_feat.data_ptr<scalar_t>();
    scalar_t* gu = grad_uv.data_ptr<scalar_t>();
    for (int parity = 0; parity < 2; ++parity) {
      const int64_t rows = (sh.H - 1 - parity + 1) / 2;
      if (rows <= 0) continue;
      at::parallel_for(0, sh.N * rows, 1, [&](int64_t b, int64_t e) {
        i2s_backward_cpu<scalar_t>(f, u, m, g, sh, (scalar_t)seam, parity, gf, gu, b, e);
      });
    }
  });
  return {grad_feat, grad_uv};
}

}  // namespace

void register_image_to_surface(pybind11::module& m) {
  m.def("image_to_surface_forward", &forward,
        "features (N,H,W,C), uv (N,H,W,2), mask (N,H,W) uint8, Q, seam -> accum (N,Q,Q,C), "
        "weight (N,Q,Q)");
  m.def("image_to_surface_backward", &backward,
        "features, uv, mask, grad_accum (N,Q,Q,C), Q, seam -> grad_features (N,H,W,C), grad_uv");
}

}  // namespace ntdm
