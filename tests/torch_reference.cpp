// LibTorch references for tests/torch_reference.h.
#include "torch_reference.h"

#include <torch/torch.h>

#include <cstring>

#include "torch_util.h"

namespace fgtest {
namespace {

at::ScalarType scalar_type(flatgather::DType t) {
  using flatgather::DType;
  switch (t) {
    case DType::Float32: return at::kFloat;
    case DType::Float16: return at::kHalf;
    case DType::BFloat16: return at::kBFloat16;
    case DType::Float64: return at::kDouble;
    case DType::Int8: return at::kChar;
    case DType::UInt8: return at::kByte;
    case DType::Int16: return at::kShort;
    case DType::Int32: return at::kInt;
    case DType::Int64: return at::kLong;
    case DType::Bool: return at::kBool;
  }
  return at::kFloat;
}

at::Tensor wrap(const void* p, std::int64_t n, flatgather::DType t) {
  return at::from_blob(const_cast<void*>(p), {n}, scalar_type(t));
}

std::vector<char> raw_bytes(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  std::vector<char> out(static_cast<std::size_t>(c.numel()) * c.element_size());
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size());
  return out;
}

}  // namespace

std::vector<char> torch_cast(const void* src, std::int64_t n, flatgather::DType from,
                             flatgather::DType to) {
  return raw_bytes(wrap(src, n, from).to(scalar_type(to)));
}

std::vector<char> torch_add_scaled(const void* t, flatgather::DType t_dtype, const void* v,
                                   flatgather::DType v_dtype, std::int64_t n, double alpha) {
  return raw_bytes(reference_add_scaled(wrap(t, n, t_dtype), wrap(v, n, v_dtype), alpha));
}

}  // namespace fgtest
