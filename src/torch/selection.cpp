// The module walk and the selection patterns (selection.h).
#include "selection.h"

#include <algorithm>
#include <regex>

#include "check.h"
#include "spelling.h"

namespace flatgather {
namespace torch {
namespace detail {

namespace {

// Glob ("*", "?") or "re:<ECMAScript regex>", matched against the whole name.
class Pattern {
 public:
  explicit Pattern(const std::string& text) {
    std::string re;
    if (text.rfind("re:", 0) == 0) {
      re = text.substr(3);
    } else {
      for (char c : text) {
        if (c == '*') {
          re += ".*";
        } else if (c == '?') {
          re += '.';
        } else if (std::string("\\^$.|+()[]{}").find(c) != std::string::npos) {
          re += '\\';
          re += c;
        } else {
          re += c;
        }
      }
    }
    try {
      regex_ = std::regex(re, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      FG_CHECK(false, "selection pattern '" << text << "' is not a valid regex: " << e.what());
    }
  }
  bool matches(const std::string& name) const { return std::regex_match(name, regex_); }

 private:
  std::regex regex_;
};

std::string last_component(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

bool any_matches(const std::vector<Pattern>& patterns, const std::string& name) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const Pattern& p) { return p.matches(name); });
}

}  // namespace

std::vector<NamedTensor> walk_module(const ::torch::nn::Module& module, bool parameters,
                                     bool buffers) {
  std::vector<NamedTensor> out;
  module.apply(
      [&](const std::string& prefix, const ::torch::nn::Module& m) {
    const std::string dot = prefix.empty() ? "" : prefix + ".";
    if (parameters) {
      for (const auto& item : m.named_parameters(/*recurse=*/false)) {
        if (item.value().defined()) out.push_back({dot + item.key(), item.value(), false});
      }
    }
    if (buffers) {
      for (const auto& item : m.named_buffers(/*recurse=*/false)) {
        if (item.value().defined()) out.push_back({dot + item.key(), item.value(), true});
      }
    }
      },
      std::string());
  return out;
}

Selected select(const std::vector<NamedTensor>& walk, const Selection& selection,
                Spelling spelling) {
  FG_CHECK(!(selection.grads && selection.buffers),
           "selection: buffers have no gradients; select grads with parameters only");
  FG_CHECK(selection.parameters || selection.buffers,
           "selection: neither parameters nor buffers are selected");
  std::vector<Pattern> include, exclude;
  for (const auto& p : selection.include) include.emplace_back(p);
  for (const auto& p : selection.exclude) exclude.emplace_back(p);

  auto selected = [&](const std::string& name) {
    const std::string leaf = last_component(name);
    if (selection.kind == Selection::Kind::Weights && leaf.find("weight") == std::string::npos)
      return false;
    if (selection.kind == Selection::Kind::Biases && leaf.find("bias") == std::string::npos)
      return false;
    if (!include.empty() && !any_matches(include, name)) return false;
    return !any_matches(exclude, name);
  };

  Selected out;
  for (const NamedTensor& item : walk) {
    const at::Tensor& t = item.tensor;
    if (!t.defined() || !(item.is_buffer ? selection.buffers : selection.parameters)) continue;
    if (!selected(item.name)) continue;
    if (!item.is_buffer && selection.trainable_only && !t.requires_grad()) continue;
    if (!selection.grads) {
      out.names.push_back(item.name);
      out.tensors.push_back(t);
      continue;
    }
    const at::Tensor g = t.grad();
    if (!g.defined()) {
      FG_CHECK(selection.missing_grad != MissingGrad::Error,
               undefined_gradient(describe_tensor(item.name, t, spelling), spelling)
                   << "run backward first, or select with "
                   << missing_grad_spelling({MissingGrad::ZeroFill, MissingGrad::Skip}, spelling));
      if (selection.missing_grad == MissingGrad::Skip) continue;
    }
    out.names.push_back(item.name);
    out.tensors.push_back(g);
    out.params.push_back(t);
  }
  FG_CHECK(!out.tensors.empty(), "empty selection: no "
                                     << (selection.grads ? "gradient" : "tensor")
                                     << " of the module matches the selection (parameters="
                                     << bool_spelling(selection.parameters, spelling)
                                     << ", buffers=" << bool_spelling(selection.buffers, spelling)
                                     << ", trainable_only="
                                     << bool_spelling(selection.trainable_only, spelling)
                                     << ", include/exclude patterns: " << selection.include.size()
                                     << "/" << selection.exclude.size() << ")");
  return out;
}

}  // namespace detail
}  // namespace torch
}  // namespace flatgather
