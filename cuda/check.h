// Argument checks for the torch binding layer: every failure names the argument and what was wrong.
#pragma once
#include <torch/extension.h>

#include <sstream>
#include <string>
#include <vector>

namespace ntdm {

inline std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << "(";
  for (int64_t d = 0; d < t.dim(); ++d) os << (d ? ", " : "") << t.size(d);
  os << ")";
  return os.str();
}

// Checks rank and, where expected[d] >= 0, the size of dimension d.
inline void check_shape(const at::Tensor& t, const char* name, const std::vector<int64_t>& expected,
                        const char* layout) {
  bool ok = t.dim() == (int64_t)expected.size();
  for (size_t d = 0; ok && d < expected.size(); ++d)
    if (expected[d] >= 0 && t.size(d) != expected[d]) ok = false;
  TORCH_CHECK_VALUE(ok, "argument '", name, "' must have shape ", layout, ", got ", shape_str(t));
}

inline void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "argument '",
                   name, "' must be float32 or float64, got ", t.scalar_type());
}

inline void check_same(const at::Tensor& t, const at::Tensor& ref, const char* name,
                       const char* ref_name, bool dtype) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), "argument '", name, "' is on ", t.device(), " but '",
                    ref_name, "' is on ", ref.device());
  if (dtype)
    TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "argument '", name, "' has dtype ",
                     t.scalar_type(), " but '", ref_name, "' has ", ref.scalar_type());
}

inline void check_contiguous(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_contiguous(), "argument '", name, "' must be contiguous");
}

}  // namespace ntdm
