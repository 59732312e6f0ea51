// safetensors files (include/flatgather/safetensors.h, torch_safetensors.h): the header parser
// against hand-written files, and modules saved and loaded bit for bit.
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "flatgather/safetensors.h"
#include "flatgather/torch_safetensors.h"
#include "torch_util.h"

namespace {

namespace fg = flatgather;
namespace fgt = flatgather::torch;
using fgtest::bits_equal;

// A file: the 8-byte little-endian length, the JSON header as given, the data bytes.
std::string file_of(const std::string& json, std::size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xFF);
  return out + json + std::string(data_bytes, '\x5A');
}

fg::SafetensorsHeader parse(const std::string& file) {
  return fg::parse_safetensors(reinterpret_cast<const unsigned char*>(file.data()),
                               static_cast<std::int64_t>(file.size()));
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "flatgather_" + name + ".safetensors";
}

void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(SafetensorsHeader, ParsesEntriesSortedByOffsetAndMetadata) {
  const std::string json =
      R"({"b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]},)"
      R"("__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  const fg::SafetensorsHeader h = parse(file_of(json, 20));
  ASSERT_EQ(h.entries.size(), 2u);
  EXPECT_EQ(h.entries[0].name, "w");
  EXPECT_EQ(h.entries[0].dtype, fg::DType::Float32);
  EXPECT_EQ(h.entries[0].shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(h.entries[1].name, "b");
  EXPECT_EQ(h.entries[1].begin, 16);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.data_offset, 8 + static_cast<std::int64_t>(json.size()));
  EXPECT_EQ(h.data_bytes, 20);
  // written back: the data section 8-byte aligned, and the same entries
  const std::string header = fg::format_safetensors_header(h.entries, h.metadata);
  EXPECT_EQ(header.size() % 8, 0u);
  const fg::SafetensorsHeader again = parse(header + std::string(20, '\0'));
  ASSERT_EQ(again.entries.size(), 2u);
  EXPECT_EQ(again.entries[1].name, "b");
  EXPECT_EQ(again.metadata, h.metadata);
}

TEST(SafetensorsHeader, MalformedFilesAreNamedErrors) {
  const struct {
    std::string file;
    const char* message;
  } cases[] = {
      {std::string(5, '\0'), "fewer than the 8-byte header length"},
      {file_of("{}", 0).substr(0, 9), "truncated"},
      {file_of("[1, 2]", 0), "must be a JSON object"},
      {file_of("{\"w\": ", 0), "not valid JSON"},
      {file_of(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})", 8),
       "outside the data section"},
      {file_of(R"({"w":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", 8), "does not support"},
      {file_of(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0),
       "non-negative integer"},
      {file_of(R"({"w":{"dtype":"F32","shape":[1]}})", 0), "no \"data_offsets\""},
      {file_of(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4), "by its shape"},
      {file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
               8),
       "overlap"},
      {file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "hole"},
      {file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8), "trailing bytes"},
      {file_of(R"({"__metadata__":{"k":1}})", 0), "must be a string"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.message);
    try {
      parse(c.file);
      ADD_FAILURE() << "no error";
    } catch (const fg::Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << e.what();
    }
  }
}

struct NetImpl : torch::nn::Module {
  NetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)));
    bn = register_module("bn", torch::nn::BatchNorm2d(4));
    fc = register_module("fc", torch::nn::Linear(4, 2));
  }
  torch::Tensor forward(torch::Tensor x) { return fc(bn(conv(x)).mean({2, 3})); }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Net);

Net trained(uint64_t seed) {
  torch::manual_seed(seed);
  Net net;
  net->train();
  for (int i = 0; i < 3; ++i) net->forward(torch::randn({2, 3, 5, 5}));
  return net;
}

std::vector<std::pair<std::string, at::Tensor>> state(const torch::nn::Module& m) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : m.named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

TEST(SafetensorsFiles, ModuleRoundTripsBitForBit) {
  Net net = trained(1);
  const std::string path = temp_path("module");
  fgt::save_safetensors(path, *net, {{"epoch", "3"}});
  Net fresh = trained(2);
  const fgt::SafetensorsLoadResult r = fgt::load_safetensors(path, *fresh);
  EXPECT_TRUE(r.missing.empty() && r.unexpected.empty());
  const auto want = state(*net), got = state(*fresh);
  ASSERT_EQ(want.size(), got.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(want[i].first);
    EXPECT_TRUE(bits_equal(got[i].second, want[i].second));
  }
  EXPECT_EQ(fresh->bn->num_batches_tracked.item<int64_t>(), 3);
  std::remove(path.c_str());
}

TEST(SafetensorsFiles, FloatingDtypesAreCastAndErrorsWriteNothing) {
  torch::manual_seed(3);
  const at::Tensor w = at::randn({3, 4}), s = at::randint(0, 9, {2}, at::kLong);
  const std::string path = temp_path("cast");
  fgt::save_safetensors(path, {w.to(at::kBFloat16), s}, {"w", "s"});
  at::Tensor w32 = at::zeros({3, 4}), s64 = at::zeros({2}, at::kLong);
  fgt::load_safetensors(path, {w32, s64}, {"w", "s"});
  EXPECT_TRUE(bits_equal(w32, w.to(at::kBFloat16).to(at::kFloat)));
  EXPECT_TRUE(bits_equal(s64, s));

  at::Tensor wrong_shape = at::full({4, 3}, 7.0f), s_f = at::full({2}, 7.0f);
  EXPECT_THROW(fgt::load_safetensors(path, {wrong_shape}, {"w"}, false), fg::Error);
  EXPECT_THROW(fgt::load_safetensors(path, {w32, s_f}, {"w", "s"}), fg::Error);  // int64 -> f32
  EXPECT_THROW(fgt::load_safetensors(path, {w32}, {"w"}), fg::Error);            // 's' unexpected
  EXPECT_TRUE(bits_equal(wrong_shape, at::full({4, 3}, 7.0f)));
  EXPECT_TRUE(bits_equal(s_f, at::full({2}, 7.0f)));
  const fgt::SafetensorsLoadResult r = fgt::load_safetensors(path, {w32, s64}, {"w", "x"}, false);
  EXPECT_EQ(r.missing, std::vector<std::string>{"x"});
  EXPECT_EQ(r.unexpected, std::vector<std::string>{"s"});
  std::remove(path.c_str());
}

TEST(SafetensorsFiles, UnalignedFileOfAnotherWriterIsRepacked) {
  // int8 first, then a float32 at byte 3: legal in the format, not a byte plan's layout.
  const std::string json = R"({"c":{"dtype":"I8","shape":[3],"data_offsets":[0,3]},)"
                           R"("f":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}})";
  std::string file = file_of(json, 0);
  const float values[2] = {1.5f, -2.25f};
  file += std::string("\x01\x02\x03", 3) + std::string(reinterpret_cast<const char*>(values), 8);
  const std::string path = temp_path("unaligned");
  write(path, file);
  at::Tensor c = at::zeros({3}, at::kChar), f = at::zeros({2});
  fgt::load_safetensors(path, {f, c}, {"f", "c"});
  EXPECT_TRUE(bits_equal(c, at::tensor({1, 2, 3}, at::kChar)));
  EXPECT_TRUE(bits_equal(f, at::tensor({1.5f, -2.25f})));
  std::remove(path.c_str());
}

}  // namespace
