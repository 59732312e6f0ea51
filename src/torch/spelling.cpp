// The adapter's spellings for C++ and Python callers (NOTE: [spelling] in spelling.h).
#include "spelling.h"

#include <cctype>
#include <sstream>

#include "format.h"

namespace flatgather {
namespace torch {
namespace detail {

namespace {

// LibTorch's name of a layout or scalar type ("SparseCsr", "ComplexFloat").
template <class T>
std::string libtorch_name(const T& value) {
  std::ostringstream os;
  os << value;
  return os.str();
}

// "SparseCsr" -> "sparse_csr", "QUInt4x2" -> "quint4x2": torch's Python names are LibTorch's
// in lower case, with an underscore where a lower-case letter meets a capital (layouts only).
std::string lower(const std::string& name, bool underscores) {
  std::string out;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (underscores && i > 0 && std::isupper(c) &&
        std::islower(static_cast<unsigned char>(name[i - 1]))) {
      out += '_';
    }
    out += static_cast<char>(std::tolower(c));
  }
  return out;
}

const char* missing_grad_name(MissingGrad m, Spelling spelling) {
  const bool py = spelling == Spelling::Python;
  switch (m) {
    case MissingGrad::Error: return py ? "'error'" : "Error";
    case MissingGrad::ZeroFill: return py ? "'zero'" : "ZeroFill";
    case MissingGrad::Skip: return py ? "'skip'" : "Skip";
  }
  return "?";
}

}  // namespace

bool supported(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
    case at::kHalf:
    case at::kBFloat16:
    case at::kDouble:
    case at::kChar:
    case at::kByte:
    case at::kShort:
    case at::kInt:
    case at::kLong:
    case at::kBool: return true;
    default: return false;
  }
}

std::string dtype_spelling(at::ScalarType dtype, Spelling spelling) {
  if (supported(dtype)) return dtype_name(to_dtype(dtype));
  if (spelling == Spelling::Cpp) return c10::toString(dtype);
  // Python: torch.complex32/64/128 are named by their width, every other type by LibTorch's
  // name in lower case (torch.qint8, torch.quint4x2, torch.float8_e4m3fn, torch.uint16).
  switch (dtype) {
    case at::kComplexHalf: return "complex32";
    case at::kComplexFloat: return "complex64";
    case at::kComplexDouble: return "complex128";
    default: return lower(c10::toString(dtype), /*underscores=*/false);
  }
}

std::string layout_spelling(at::Layout layout, Spelling spelling) {
  const std::string name = libtorch_name(layout);
  if (spelling == Spelling::Cpp) return name;
  if (layout == at::kSparse) return "torch.sparse_coo";
  if (layout == at::kMkldnn) return "torch._mkldnn";
  return "torch." + lower(name, /*underscores=*/true);
}

std::string bool_spelling(bool value, Spelling spelling) {
  if (spelling == Spelling::Python) return value ? "True" : "False";
  return value ? "true" : "false";
}

std::string missing_grad_spelling(const std::vector<MissingGrad>& choices, Spelling spelling) {
  std::string out = spelling == Spelling::Python ? "missing_grad=" : "missing_grad = ";
  for (std::size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) out += i + 1 == choices.size() ? " or " : ", ";
    out += missing_grad_name(choices[i], spelling);
  }
  return out;
}

std::string undefined_gradient(const std::string& who, Spelling spelling) {
  return "the gradient of parameter " + who +
         " is undefined (no backward yet, or zero_grad(set_to_none=" +
         bool_spelling(true, spelling) + ")); ";
}

std::string shape_of(const at::Tensor& t) {
  return ::flatgather::detail::shape_string(t.sizes().data(), t.sizes().size());
}

std::string describe_tensor(const std::string& name, const at::Tensor& t, Spelling spelling) {
  std::ostringstream os;
  os << "'" << name << "'";
  if (t.defined()) {
    os << " (shape " << shape_of(t) << ", " << dtype_spelling(t.scalar_type(), spelling) << ", "
       << t.device() << ")";
  } else {
    os << " (undefined)";
  }
  return os.str();
}

}  // namespace detail
}  // namespace torch
}  // namespace flatgather
