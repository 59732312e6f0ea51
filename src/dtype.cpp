#include <sstream>

#include "flatgather/dtype.h"
#include "flatgather/tensor_ref.h"
#include "format.h"

namespace flatgather {

namespace {
constexpr DType kAllDTypes[] = {DType::Float32, DType::Float16, DType::BFloat16, DType::Float64,
                                DType::Int8,    DType::UInt8,   DType::Int16,    DType::Int32,
                                DType::Int64,   DType::Bool};
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Float64: return "float64";
    case DType::Int8: return "int8";
    case DType::UInt8: return "uint8";
    case DType::Int16: return "int16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
  }
  return "unknown";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  if (name.substr(0, 6) == "torch.") name.remove_prefix(6);
  for (DType t : kAllDTypes) {
    if (name == dtype_name(t)) return t;
  }
  struct Alias {
    const char* name;
    DType dtype;
  };
  static constexpr Alias kAliases[] = {
      {"float", DType::Float32}, {"fp32", DType::Float32},  {"half", DType::Float16},
      {"fp16", DType::Float16},  {"bf16", DType::BFloat16}, {"double", DType::Float64},
      {"fp64", DType::Float64},  {"long", DType::Int64},    {"int", DType::Int32},
      {"short", DType::Int16},   {"char", DType::Int8},     {"byte", DType::UInt8}};
  for (const Alias& a : kAliases) {
    if (name == a.name) return a.dtype;
  }
  return std::nullopt;
}

std::string dtype_valid_names() {
  std::string out;
  for (DType t : kAllDTypes) {
    if (!out.empty()) out += ", ";
    out += dtype_name(t);
  }
  return out;
}

std::string to_string(const Device& d) {
  return d.is_cuda() ? "cuda:" + std::to_string(d.index) : std::string("cpu");
}

std::int64_t numel(const TensorRef& t) {
  std::int64_t n = 1;
  for (std::int64_t s : t.sizes) n *= s;
  return n;
}

std::string describe(const TensorRef& t) {
  std::ostringstream os;
  os << "'" << t.name << "' (shape " << detail::shape_string(t.sizes) << ", " << dtype_name(t.dtype)
     << ", " << to_string(t.device) << ")";
  return os.str();
}

}  // namespace flatgather
