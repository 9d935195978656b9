// The one Python module of ntdm's compiled ops: ntdm_cli._C. Each op registers its functions.
#include <torch/extension.h>

namespace ntdm {
void register_image_to_surface(pybind11::module& m);
void register_rasterize(pybind11::module& m);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ntdm compiled ops (CPU always; CUDA when built with NTDM_WITH_CUDA)";
#ifdef NTDM_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  ntdm::register_image_to_surface(m);
  ntdm::register_rasterize(m);
}
