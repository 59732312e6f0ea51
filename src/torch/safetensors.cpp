// safetensors files from and into LibTorch tensors through byte plans.
//
// NOTE: [safetensors packing]
// The format forbids holes, while a byte plan starts every segment at a multiple of its
// element size (NOTE: [byte plans]). Both hold at once when the tensors are ordered by
// element size, largest first (stable, so equal sizes keep their order): element sizes are
// powers of two, so after the 8-byte tensors the cursor is a multiple of 8, after the 4-byte
// ones of 4, and so on, and no segment ever needs padding. Saving builds such a byte plan
// with align_bytes 0, gathers it once into a host buffer just after the header, and writes
// header and data in one write; the header is padded with spaces to a multiple of 8 bytes,
// so the data section, and every tensor in it, is aligned in the file as in memory.
//
// Loading reads the whole file once and checks the header and every name, shape and dtype
// before anything is written. The tensors whose dtype equals the file's go through one byte
// plan ordered by file offset: for a file written this way (and by the reference writer,
// which also orders by dtype size) its layout equals the file's, so the data section is its
// flat buffer as read and one scatter writes them all. Otherwise (skipped or cast entries,
// or an entry at an offset that is not a multiple of its element size) the entries are first
// repacked into the plan's layout with one memcpy each. Floating tensors stored in another
// floating dtype are scattered by one plan per file dtype, whose flat dtype is the file's,
// so the cast rounds as everywhere else (NOTE: [rounding]).
#include "flatgather/torch_safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <set>
#include <sstream>

#include "check.h"

namespace flatgather {
namespace torch {

namespace {

// Names and tensors of a plan's tensors (aliases included), skipping undefined gradients.
void named_tensors(const Plan& plan, std::vector<std::string>& names,
                   std::vector<at::Tensor>& tensors) {
  const std::vector<at::Tensor> all = plan.tensors();
  const std::vector<TensorRef>& refs = plan.core().tensors();
  for (std::size_t i = 0; i < all.size() && i < refs.size(); ++i) {
    if (!all[i].defined()) continue;
    names.push_back(refs[i].name);
    tensors.push_back(all[i]);
  }
}

Plan state_plan(const ::torch::nn::Module& module) {
  Selection s;
  s.buffers = true;
  Options o;
  o.dtype = at::kByte;
  return Plan::from_module(module, s, o);
}

Options byte_options() {
  Options o;
  o.dtype = at::kByte;
  o.check_tensors = false;
  return o;
}

std::string list(const std::vector<std::string>& names) {
  std::ostringstream os;
  for (std::size_t i = 0; i < names.size() && i < 5; ++i)
    os << (i ? ", " : "") << "'" << names[i] << "'";
  if (names.size() > 5) os << " and " << names.size() - 5 << " more";
  return os.str();
}

void write_file(const std::string& path, const void* data, std::size_t bytes) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  FG_CHECK(f != nullptr,
           "save_safetensors: cannot open '" << tmp << "' for writing: " << std::strerror(errno));
  const std::size_t written = std::fwrite(data, 1, bytes, f);
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  if (written != bytes || !closed) {
    std::remove(tmp.c_str());
    FG_CHECK(false, "save_safetensors: writing '" << tmp << "' failed after " << written << " of "
                                                  << bytes << " bytes: " << std::strerror(err));
  }
  FG_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "save_safetensors: cannot rename '"
                                                            << tmp << "' to '" << path
                                                            << "': " << std::strerror(errno));
}

at::Tensor read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  FG_CHECK(f != nullptr,
           "load_safetensors: cannot open '" << path << "': " << std::strerror(errno));
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  at::Tensor file = at::empty({std::max<long>(size, 0)}, at::kByte);
  const std::size_t got =
      size > 0 ? std::fread(file.data_ptr(), 1, static_cast<std::size_t>(size), f) : 0;
  std::fclose(f);
  FG_CHECK(size >= 0 && got == static_cast<std::size_t>(size),
           "load_safetensors: reading '" << path << "' failed after " << got << " bytes");
  return file;
}

// A flat buffer for `plan` from the file's data section: the section itself when the plan's
// layout equals the entries' offsets, else the entries repacked (NOTE: [safetensors packing]).
at::Tensor staged(const Plan& plan, const std::vector<const SafetensorsEntry*>& entries,
                  const at::Tensor& data) {
  const std::int64_t es = dtype_size(plan.layout().flat_dtype());
  const auto& segments = plan.layout().segments();
  bool same = plan.numel() * es == data.numel();
  for (std::size_t k = 0; k < segments.size() && same; ++k) {
    same = segments[k].offset * es == entries[k]->begin;
  }
  at::Tensor flat;
  if (same) {
    flat = data.view(plan.dtype());
  } else {
    flat = at::empty({plan.numel()}, plan.dtype());
    auto* out = static_cast<unsigned char*>(flat.data_ptr());
    const auto* in = data.data_ptr<std::uint8_t>();
    for (std::size_t k = 0; k < segments.size(); ++k) {
      std::memcpy(out + segments[k].offset * es, in + entries[k]->begin,
                  static_cast<std::size_t>(entries[k]->end - entries[k]->begin));
    }
  }
  return flat.to(plan.device());
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<at::Tensor>& tensors,
                      const std::vector<std::string>& names, const SafetensorsMetadata& metadata) {
  FG_CHECK(names.size() == tensors.size(), "save_safetensors: got "
                                               << names.size() << " names for " << tensors.size()
                                               << " tensors; give one name each");
  std::vector<SafetensorsEntry> entries;
  at::Tensor file;
  if (tensors.empty()) {
    const std::string header = format_safetensors_header(entries, metadata);
    return write_file(path, header.data(), header.size());
  }
  std::vector<std::size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return tensors[a].element_size() > tensors[b].element_size();
  });
  std::vector<at::Tensor> sorted;
  std::vector<std::string> sorted_names;
  for (std::size_t i : order) {
    sorted.push_back(tensors[i]);
    sorted_names.push_back(names[i]);
  }
  const Plan packed = Plan::from_tensors(sorted, sorted_names, byte_options());
  for (const Segment& s : packed.layout().segments()) {
    entries.push_back(
        {s.name, s.dtype, s.shape, s.offset, s.offset + s.numel * dtype_size(s.dtype)});
  }
  const std::string header = format_safetensors_header(entries, metadata);
  const auto header_bytes = static_cast<std::int64_t>(header.size());
  file = at::empty({header_bytes + packed.numel()}, at::kByte);
  std::memcpy(file.data_ptr(), header.data(), header.size());
  at::Tensor data = file.narrow(0, header_bytes, packed.numel());
  if (packed.device().is_cpu()) {
    packed.gather(data);
  } else {
    data.copy_(packed.gather());  // one gather on the device, one copy to the host
  }
  write_file(path, file.data_ptr(), static_cast<std::size_t>(file.numel()));
}

void save_safetensors(const std::string& path, const ::torch::nn::Module& module,
                      const SafetensorsMetadata& metadata) {
  save_safetensors(path, state_plan(module), metadata);
}

void save_safetensors(const std::string& path, const Plan& plan,
                      const SafetensorsMetadata& metadata) {
  std::vector<std::string> names;
  std::vector<at::Tensor> tensors;
  named_tensors(plan, names, tensors);
  save_safetensors(path, tensors, names, metadata);
}

SafetensorsLoadResult load_safetensors(const std::string& path,
                                       const std::vector<at::Tensor>& tensors,
                                       const std::vector<std::string>& names, bool strict) {
  FG_CHECK(names.size() == tensors.size(), "load_safetensors: got "
                                               << names.size() << " names for " << tensors.size()
                                               << " tensors; give one name each");
  at::Tensor file = read_file(path);
  SafetensorsHeader h;
  try {
    h = parse_safetensors(file.data_ptr<std::uint8_t>(), file.numel());
  } catch (const Error& e) {
    FG_CHECK(false, "load_safetensors('" << path << "'): " << e.what());
  }
  at::Tensor data = file.narrow(0, h.data_offset, h.data_bytes);
  if (h.data_offset % 8 != 0) data = data.clone();  // aligned for every element size

  // Match every segment (a tensor and its ties) with an entry, by name or alias.
  const Plan target = Plan::from_tensors(tensors, names, byte_options());
  const std::vector<Segment>& segments = target.layout().segments();
  std::vector<std::size_t> first_tensor(segments.size(), tensors.size());
  for (std::size_t i = tensors.size(); i-- > 0;) first_tensor[target.core().segment_of(i)] = i;
  SafetensorsLoadResult result;
  std::map<std::string, const SafetensorsEntry*> by_name;
  for (const SafetensorsEntry& e : h.entries) by_name.emplace(e.name, &e);
  auto find = [&](const std::string& name) -> const SafetensorsEntry* {
    auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  };
  std::set<const SafetensorsEntry*> used;
  std::vector<const SafetensorsEntry*> entry_of(segments.size(), nullptr);
  for (std::size_t k = 0; k < segments.size(); ++k) {
    const Segment& s = segments[k];
    const SafetensorsEntry* e = find(s.name);
    for (std::size_t a = 0; !e && a < s.aliases.size(); ++a) e = find(s.aliases[a]);
    if (!e) {
      result.missing.push_back(s.name);
      continue;
    }
    used.insert(e);
    entry_of[k] = e;
  }
  for (const SafetensorsEntry& e : h.entries) {
    if (!used.count(&e)) result.unexpected.push_back(e.name);
  }
  FG_CHECK(!strict || result.missing.empty(),
           "load_safetensors('" << path << "'): the file has no tensor " << list(result.missing)
                                << "; pass strict=false to load the others");
  FG_CHECK(!strict || result.unexpected.empty(),
           "load_safetensors('" << path << "'): the file's tensor(s) " << list(result.unexpected)
                                << " match no target name; pass strict=false to ignore them");

  // Check every matched pair, then group: same dtype (bytes), or a cast per file dtype.
  std::vector<std::size_t> same;
  std::map<DType, std::vector<std::size_t>> cast;
  for (std::size_t k = 0; k < segments.size(); ++k) {
    const SafetensorsEntry* e = entry_of[k];
    if (!e) continue;
    const Segment& s = segments[k];
    FG_CHECK(e->shape == s.shape, "load_safetensors('" << path << "'): tensor '" << s.name
                                                       << "' has shape " << at::IntArrayRef(s.shape)
                                                       << " but the file has "
                                                       << at::IntArrayRef(e->shape));
    FG_CHECK(e->dtype == s.dtype || (dtype_is_floating(e->dtype) && dtype_is_floating(s.dtype)),
             "load_safetensors('" << path << "'): tensor '" << s.name << "' is "
                                  << dtype_name(s.dtype) << " but the file has "
                                  << dtype_name(e->dtype)
                                  << "; only floating dtypes are cast into one another");
    (e->dtype == s.dtype ? same : cast[e->dtype]).push_back(k);
  }
  // Plans over the targets in file order, all built (and so checked) before any scatter.
  struct Load {
    Plan plan;
    std::vector<const SafetensorsEntry*> entries;
  };
  std::vector<Load> loads;
  auto add = [&](std::vector<std::size_t> ks, Options o) {
    if (ks.empty()) return;
    std::sort(ks.begin(), ks.end(), [&](std::size_t a, std::size_t b) {
      return entry_of[a]->begin < entry_of[b]->begin;
    });
    std::vector<at::Tensor> ts;
    std::vector<std::string> ns;
    Load l;
    for (std::size_t k : ks) {
      ts.push_back(tensors[first_tensor[k]]);
      ns.push_back(segments[k].name);
      l.entries.push_back(entry_of[k]);
    }
    l.plan = Plan::from_tensors(ts, ns, o);
    FG_CHECK(l.plan.core().writable(), "load_safetensors('"
                                           << path
                                           << "'): two target tensors overlap in memory; "
                                              "load into tensors that do not share memory");
    loads.push_back(std::move(l));
  };
  add(same, byte_options());
  for (const auto& [dtype, ks] : cast) {
    Options o;
    o.dtype = to_scalar_type(dtype);
    o.check_tensors = false;
    add(ks, o);
  }
  std::vector<at::Tensor> flats;
  for (const Load& l : loads) flats.push_back(staged(l.plan, l.entries, data));
  for (std::size_t i = 0; i < loads.size(); ++i) loads[i].plan.scatter(flats[i]);
  return result;
}

SafetensorsLoadResult load_safetensors(const std::string& path, ::torch::nn::Module& module,
                                       bool strict) {
  return load_safetensors(path, state_plan(module), strict);
}

SafetensorsLoadResult load_safetensors(const std::string& path, const Plan& plan, bool strict) {
  std::vector<std::string> names;
  std::vector<at::Tensor> tensors;
  named_tensors(plan, names, tensors);
  return load_safetensors(path, tensors, names, strict);
}

}  // namespace torch
}  // namespace flatgather
