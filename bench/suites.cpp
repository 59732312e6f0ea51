// The embedded suites (architecture formulas) and the manifest reader.
#include "suites.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace fgbench {
namespace {

using flatgather::DType;

void add(Suite& s, std::string name, std::vector<std::int64_t> shape, DType dtype = DType::Float32,
         Storage storage = Storage::Contiguous) {
  s.tensors.push_back({std::move(name), std::move(shape), dtype, storage});
}

// GPT-2 (Radford et al. 2019), Hugging Face parameter names; Conv1D weights are [in, out].
void add_gpt2_blocks(Suite& s, int layers, std::int64_t d, DType dtype) {
  for (int l = 0; l < layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    add(s, p + "ln_1.weight", {d}, dtype);
    add(s, p + "ln_1.bias", {d}, dtype);
    add(s, p + "attn.c_attn.weight", {d, 3 * d}, dtype);
    add(s, p + "attn.c_attn.bias", {3 * d}, dtype);
    add(s, p + "attn.c_proj.weight", {d, d}, dtype);
    add(s, p + "attn.c_proj.bias", {d}, dtype);
    add(s, p + "ln_2.weight", {d}, dtype);
    add(s, p + "ln_2.bias", {d}, dtype);
    add(s, p + "mlp.c_fc.weight", {d, 4 * d}, dtype);
    add(s, p + "mlp.c_fc.bias", {4 * d}, dtype);
    add(s, p + "mlp.c_proj.weight", {4 * d, d}, dtype);
    add(s, p + "mlp.c_proj.bias", {d}, dtype);
  }
  add(s, "ln_f.weight", {d}, dtype);
  add(s, "ln_f.bias", {d}, dtype);
}

// The whole of GPT-2 small: embeddings and 12 blocks of d_model 768.
void add_gpt2_small(Suite& s, DType dtype) {
  add(s, "wte.weight", {50257, 768}, dtype);
  add(s, "wpe.weight", {1024, 768}, dtype);
  add_gpt2_blocks(s, 12, 768, dtype);
}

Suite gpt2_small() {
  Suite s;
  s.name = "gpt2-small";
  s.description =
      "GPT-2 small: vocab 50257, context 1024, d_model 768, 12 layers; embeddings, attention "
      "and MLP matrices, LayerNorm weights and biases; float32";
  add_gpt2_small(s, DType::Float32);
  return s;
}

// Llama-2-7B: vocab 32000, d_model 4096, 32 layers, SwiGLU MLP 11008, RMSNorm, untied head.
Suite llama_7b() {
  Suite s;
  s.name = "llama-7b";
  s.description =
      "Llama-2-7B class: vocab 32000, d_model 4096, 32 layers, MLP 11008 (SwiGLU), RMSNorm "
      "weights, untied LM head; bfloat16 into a bfloat16 flat buffer; GPU only";
  s.flat_dtype = DType::BFloat16;
  s.gpu_only = true;
  const std::int64_t d = 4096, ffn = 11008, vocab = 32000;
  const DType bf = DType::BFloat16;
  add(s, "model.embed_tokens.weight", {vocab, d}, bf);
  for (int l = 0; l < 32; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
      add(s, p + "self_attn." + proj + ".weight", {d, d}, bf);
    }
    add(s, p + "mlp.gate_proj.weight", {ffn, d}, bf);
    add(s, p + "mlp.up_proj.weight", {ffn, d}, bf);
    add(s, p + "mlp.down_proj.weight", {d, ffn}, bf);
    add(s, p + "input_layernorm.weight", {d}, bf);
    add(s, p + "post_attention_layernorm.weight", {d}, bf);
  }
  add(s, "model.norm.weight", {d}, bf);
  add(s, "lm_head.weight", {vocab, d}, bf);
  return s;
}

// ResNet-50 (He et al. 2016), torchvision names: bottleneck blocks [3, 4, 6, 3].
// `conv_only` keeps only the convolution weights (for the strided suite).
void add_resnet50(Suite& s, bool conv_only, Storage conv_storage) {
  auto conv = [&](const std::string& name, std::int64_t out, std::int64_t in, std::int64_t k) {
    add(s, name + ".weight", {out, in, k, k}, DType::Float32,
        k > 1 ? conv_storage : Storage::Contiguous);
  };
  auto bn = [&](const std::string& name, std::int64_t c) {
    if (conv_only) return;
    for (const char* field : {"weight", "bias", "running_mean", "running_var"}) {
      add(s, name + "." + field, {c});
    }
  };
  conv("conv1", 64, 3, 7);
  bn("bn1", 64);
  const int blocks[4] = {3, 4, 6, 3};
  std::int64_t inplanes = 64;
  for (int layer = 0; layer < 4; ++layer) {
    const std::int64_t planes = 64 << layer;
    for (int b = 0; b < blocks[layer]; ++b) {
      const std::string p = "layer" + std::to_string(layer + 1) + "." + std::to_string(b) + ".";
      conv(p + "conv1", planes, inplanes, 1);
      bn(p + "bn1", planes);
      conv(p + "conv2", planes, planes, 3);
      bn(p + "bn2", planes);
      conv(p + "conv3", planes * 4, planes, 1);
      bn(p + "bn3", planes * 4);
      if (b == 0) {
        conv(p + "downsample.0", planes * 4, inplanes, 1);
        bn(p + "downsample.1", planes * 4);
      }
      inplanes = planes * 4;
    }
  }
  if (!conv_only) {
    add(s, "fc.weight", {1000, 2048});
    add(s, "fc.bias", {1000});
  }
}

Suite resnet50() {
  Suite s;
  s.name = "resnet50";
  s.description =
      "ResNet-50: 53 convolutions, 53 batch norms (weight, bias, running_mean, running_var), "
      "fc; float32";
  add_resnet50(s, false, Storage::Contiguous);
  return s;
}

// ResNet-18 (He et al. 2016), torchvision names: basic blocks [2, 2, 2, 2], and the whole
// state_dict(): every batch norm also holds running_mean, running_var (float32) and the int64
// scalar num_batches_tracked, as model.state_dict() returns them.
Suite resnet18_state() {
  Suite s;
  s.name = "resnet18-state";
  s.description =
      "ResNet-18's whole state_dict(): 20 convolutions, fc, 20 batch norms (weight, bias, "
      "running_mean, running_var in float32, num_batches_tracked an int64 scalar); byte for "
      "byte into a uint8 flat buffer";
  s.flat_dtype = DType::UInt8;
  auto conv = [&](const std::string& name, std::int64_t out, std::int64_t in, std::int64_t k) {
    add(s, name + ".weight", {out, in, k, k});
  };
  auto bn = [&](const std::string& name, std::int64_t c) {
    for (const char* field : {"weight", "bias", "running_mean", "running_var"}) {
      add(s, name + "." + field, {c});
    }
    add(s, name + ".num_batches_tracked", {}, DType::Int64);
  };
  conv("conv1", 64, 3, 7);
  bn("bn1", 64);
  std::int64_t inplanes = 64;
  for (int layer = 0; layer < 4; ++layer) {
    const std::int64_t planes = 64 << layer;
    for (int b = 0; b < 2; ++b) {
      const std::string p = "layer" + std::to_string(layer + 1) + "." + std::to_string(b) + ".";
      conv(p + "conv1", planes, b == 0 ? inplanes : planes, 3);
      bn(p + "bn1", planes);
      conv(p + "conv2", planes, planes, 3);
      bn(p + "bn2", planes);
      if (b == 0 && layer > 0) {
        conv(p + "downsample.0", planes, inplanes, 1);
        bn(p + "downsample.1", planes);
      }
    }
    inplanes = planes;
  }
  add(s, "fc.weight", {1000, 512});
  add(s, "fc.bias", {1000});
  return s;
}

// splitmix64: a fixed, portable sequence (std distributions differ between libraries).
std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Suite many_tiny() {
  Suite s;
  s.name = "many-tiny";
  s.description =
      "10,000 1-D float32 tensors of 1 to 4,096 elements (uniform, splitmix64 seed 42): "
      "biases and norm weights at their worst";
  std::uint64_t state = 42;
  for (int i = 0; i < 10000; ++i) {
    const std::int64_t n = 1 + static_cast<std::int64_t>(splitmix64(state) % 4096);
    add(s, "t" + std::to_string(i), {n});
  }
  return s;
}

Suite mixed_cast() {
  Suite s;
  s.name = "mixed-cast";
  s.description =
      "GPT-2 small's 12 transformer blocks and final norm (no embeddings) as bfloat16 "
      "parameters, gathered into a float32 flat buffer (scatter rounds back to bfloat16)";
  add_gpt2_blocks(s, 12, 768, DType::BFloat16);
  s.flat_dtype = DType::Float32;
  return s;
}

Suite strided() {
  Suite s;
  s.name = "strided";
  s.description =
      "ResNet-50's 53 convolution weights in channels_last (the 3x3 and 7x7 ones strided) plus "
      "16 transposed views w.t() of 4 transformer layers' matrices (d_model 512); float32";
  add_resnet50(s, true, Storage::ChannelsLast);
  const std::int64_t d = 512;
  for (int l = 0; l < 4; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    add(s, p + "attn.qkv.weight", {3 * d, d}, DType::Float32, Storage::Transposed);
    add(s, p + "attn.proj.weight", {d, d}, DType::Float32, Storage::Transposed);
    add(s, p + "mlp.fc1.weight", {4 * d, d}, DType::Float32, Storage::Transposed);
    add(s, p + "mlp.fc2.weight", {d, 4 * d}, DType::Float32, Storage::Transposed);
  }
  return s;
}

// The suites of issue 19's GPU paths (A/B methods flatgather_{strided,misaligned,tiles,unroll}_*):
// GPU only, so the CPU run stays as short as it was.

Suite misaligned() {
  Suite s;
  s.name = "misaligned";
  s.description =
      "1,000 1-D float32 tensors of odd sizes (every other one a bias of 1 to 63 elements, the "
      "rest 1 to 65,535; splitmix64 seed 7), no padding: flat offsets not congruent to the "
      "tensors' 16-byte alignment; GPU only";
  s.gpu_only = true;
  std::uint64_t state = 7;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t largest = i % 2 == 0 ? 32 : 32768;
    const std::int64_t n = 2 * static_cast<std::int64_t>(splitmix64(state) % largest) + 1;
    add(s, "t" + std::to_string(i), {n});
  }
  return s;
}

Suite plan_4mb() {
  Suite s;
  s.name = "plan-4mb";
  s.description =
      "a 4 MiB plan: four 512 x 512 float32 matrices, which a fixed 32 KiB tile budget cuts "
      "into about 260 tiles (33 of an H200's 132 SMs); GPU only";
  s.gpu_only = true;
  for (int i = 0; i < 4; ++i) add(s, "w" + std::to_string(i), {512, 512});
  return s;
}

Suite gpt2_same_dtype(const char* name, DType dtype, const char* what) {
  Suite s;
  s.name = name;
  s.description = std::string("GPT-2 small (the gpt2-small tensors) as ") + what +
                  " parameters into a flat buffer of the same dtype: moved as raw bytes, " +
                  std::to_string(16 / flatgather::dtype_size(dtype)) +
                  " elements a 16-byte pack; GPU only";
  s.flat_dtype = dtype;
  s.gpu_only = true;
  add_gpt2_small(s, dtype);
  return s;
}

// GPT-2 small's float32 parameters gathered into a bfloat16 flat buffer (a bfloat16 gradient
// all-reduce, a bfloat16 copy of float32 master weights): every element rounded, the path of
// NOTE: [hardware conversions] (kernels/copy.cuh).
Suite gpt2_to_bf16() {
  Suite s;
  s.name = "gpt2-to-bf16";
  s.description =
      "GPT-2 small (the gpt2-small tensors) as float32 parameters into a bfloat16 flat "
      "buffer: every element rounded to bfloat16 on gather (scatter widens back); GPU only";
  s.flat_dtype = DType::BFloat16;
  s.gpu_only = true;
  add_gpt2_small(s, DType::Float32);
  return s;
}

// Line (1-based) at which each element of the top-level JSON array starts. Tolerant: the
// JSON has already been parsed successfully when this runs.
std::vector<int> element_lines(const std::string& text) {
  std::vector<int> lines;
  int line = 1, depth = 0;
  bool in_string = false, escape = false, expect_element = false;
  for (char c : text) {
    if (c == '\n') ++line;
    if (in_string) {
      if (escape) {
        escape = false;
      } else if (c == '\\') {
        escape = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (depth == 1 && expect_element && c != ' ' && c != '\t' && c != '\n' && c != '\r' &&
        c != ']') {
      lines.push_back(line);
      expect_element = false;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (depth == 0) expect_element = true;
        ++depth;
        break;
      case ']':
      case '}': --depth; break;
      case ',':
        if (depth == 1) expect_element = true;
        break;
      default: break;
    }
  }
  return lines;
}

std::string stem_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::size_t dot = base.find_last_of('.');
  if (dot != std::string::npos && dot > 0) base.resize(dot);
  return base;
}

}  // namespace

std::int64_t TensorSpec::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::int64_t Suite::numel() const {
  std::int64_t n = 0;
  for (const TensorSpec& t : tensors) n += t.numel();
  return n;
}

std::vector<std::int64_t> Suite::flat_offsets() const {
  std::vector<std::int64_t> offsets;
  std::int64_t cursor = 0;
  for (const TensorSpec& t : tensors) {
    const std::int64_t align = byte_plan() ? flatgather::dtype_size(t.dtype) : 1;
    cursor = (cursor + align - 1) / align * align;
    offsets.push_back(cursor);
    cursor += byte_plan() ? t.nbytes() : t.numel();
  }
  return offsets;
}

std::int64_t Suite::flat_numel() const {
  if (tensors.empty()) return 0;
  const TensorSpec& last = tensors.back();
  return flat_offsets().back() + (byte_plan() ? last.nbytes() : last.numel());
}

std::int64_t Suite::tensor_bytes() const {
  std::int64_t n = 0;
  for (const TensorSpec& t : tensors) n += t.nbytes();
  return n;
}

bool Suite::plain() const {
  for (const TensorSpec& t : tensors) {
    if (t.dtype != flat_dtype || t.storage != Storage::Contiguous) return false;
  }
  return true;
}

bool Suite::floating() const {
  for (const TensorSpec& t : tensors) {
    if (!flatgather::dtype_is_floating(t.dtype)) return false;
  }
  return true;
}

std::vector<Suite> builtin_suites() {
  return {gpt2_small(),
          llama_7b(),
          resnet50(),
          many_tiny(),
          mixed_cast(),
          strided(),
          misaligned(),
          plan_4mb(),
          gpt2_same_dtype("gpt2-bf16", DType::BFloat16, "bfloat16"),
          gpt2_same_dtype("gpt2-uint8", DType::UInt8, "uint8 (8-bit quantized)"),
          gpt2_to_bf16(),
          resnet18_state()};
}

Suite load_manifest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("--manifest " + path + ": cannot open the file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error("--manifest " + path + ": not valid JSON: " + e.what());
  }
  const std::string expected =
      "; expected a JSON array of {\"name\": str, \"shape\": [int, ...], \"dtype\": str} "
      "objects, dtype one of " +
      flatgather::dtype_valid_names();
  if (!j.is_array() || j.empty()) {
    throw std::runtime_error(path + ":1: the manifest is not a non-empty array" + expected);
  }
  const std::vector<int> lines = element_lines(text);

  Suite s;
  s.name = stem_of(path);
  s.description = "manifest " + path;
  bool all_floating = true, same_dtype = true;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const nlohmann::json& e = j[i];
    const int line = i < lines.size() ? lines[i] : 1;
    auto fail = [&](const std::string& what) {
      throw std::runtime_error(path + ":" + std::to_string(line) + ": element " +
                               std::to_string(i) + ": " + what + expected);
    };
    if (!e.is_object()) fail("not an object");
    for (const char* key : {"name", "shape", "dtype"}) {
      if (!e.contains(key)) fail(std::string("missing \"") + key + "\"");
    }
    if (!e["name"].is_string() || e["name"].get<std::string>().empty()) {
      fail("\"name\" must be a non-empty string, got " + e["name"].dump());
    }
    TensorSpec t;
    t.name = e["name"].get<std::string>();
    if (!e["shape"].is_array()) fail("\"shape\" must be an array, got " + e["shape"].dump());
    for (const nlohmann::json& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) {
        fail("\"shape\" must hold non-negative integers, got " + e["shape"].dump());
      }
      t.shape.push_back(d.get<std::int64_t>());
    }
    if (!e["dtype"].is_string()) fail("\"dtype\" must be a string, got " + e["dtype"].dump());
    std::string dtype_name = e["dtype"].get<std::string>();
    if (dtype_name.rfind("torch.", 0) == 0) dtype_name = dtype_name.substr(6);
    const std::optional<DType> dtype = flatgather::dtype_from_name(dtype_name);
    if (!dtype) fail("unknown dtype \"" + e["dtype"].get<std::string>() + "\"");
    t.dtype = *dtype;
    all_floating = all_floating && flatgather::dtype_is_floating(t.dtype);
    same_dtype = same_dtype && (s.tensors.empty() || t.dtype == s.tensors.front().dtype);
    s.tensors.push_back(std::move(t));
  }
  // One dtype: that dtype. Floating dtypes only: cast into float32. Otherwise (a whole
  // state_dict with its int64 counters): a byte buffer, every dtype byte for byte.
  if (same_dtype) {
    s.flat_dtype = s.tensors.front().dtype;
  } else {
    s.flat_dtype = all_floating ? DType::Float32 : DType::UInt8;
  }
  return s;
}

std::string format_bytes(std::int64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (b >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  } else if (b >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  }
  return buf;
}

}  // namespace fgbench
