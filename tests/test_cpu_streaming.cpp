// The CPU executor's streaming stores (NOTE: [cpu streaming stores]): with them forced on and
// forced off, gather, scatter and scatter_add give the bits LibTorch gives (torch::cat of
// reshape(-1), .to(dtype)), on odd sizes, misaligned sources and destinations, casts and
// strided tensors (whose gathers stream too), with the default tasks and with tiny ones cut
// inside every copy (PlanOptions::cpu_tuning, NOTE: [cpu work split]).
#include <cstdlib>
#include <random>
#include <string>

#include "flatgather/torch.h"
#include "torch_util.h"

namespace {

namespace fgt = flatgather::torch;
using fgtest::bits_equal;
using fgtest::random_tensor;
using fgtest::reference_gather;
using flatgather::CpuStreaming;

const CpuStreaming kModes[] = {CpuStreaming::On, CpuStreaming::Off};

// (tensor dtype, flat dtype): same-type copies of every element size, and casts both ways.
const std::pair<at::ScalarType, at::ScalarType> kPairs[] = {
    {at::kFloat, at::kFloat},    {at::kDouble, at::kDouble}, {at::kHalf, at::kHalf},
    {at::kChar, at::kChar},      {at::kLong, at::kLong},     {at::kBFloat16, at::kFloat},
    {at::kFloat, at::kBFloat16}, {at::kHalf, at::kDouble},   {at::kDouble, at::kHalf}};

// Tensors of odd sizes (below a cache line, around the 16 KiB chunk of casts and strided
// gathers, above a 256 KiB task), some at odd element offsets into their storage (misaligned
// sources on gather and destinations on scatter), and strided ones: transposed with rows of
// every length against the chunk (33 to 2500 columns: one row per chunk, several, and for
// 8-byte types none, which falls back to normal stores), transposed with rows and columns of
// whole cache lines, channels_last of odd sizes, and a narrowed view whose rows the chunks cut
// in the middle.
std::vector<at::Tensor> make_tensors(at::ScalarType dtype) {
  auto at_offset = [&](std::int64_t offset, std::int64_t n) {
    return random_tensor({n + offset}, dtype).narrow(0, offset, n);
  };
  return {random_tensor({1}, dtype), at_offset(1, 3), random_tensor({17, 61}, dtype),
          at_offset(3, 4097), random_tensor({257, 1031}, dtype),  // 265 k elements: several tasks
          at_offset(5, 70001), random_tensor({33, 70}, dtype).t(),
          random_tensor({4, 3, 5, 5}, dtype).contiguous(at::MemoryFormat::ChannelsLast),
          at_offset(7, 123457), random_tensor({1500, 37}, dtype).t(),
          random_tensor({2500, 9}, dtype).t(),
          random_tensor({3, 5, 7, 11}, dtype).contiguous(at::MemoryFormat::ChannelsLast),
          random_tensor({8, 19, 7, 9}, dtype).contiguous(at::MemoryFormat::ChannelsLast),
          random_tensor({50, 301}, dtype).narrow(1, 3, 290),
          // Rows and columns of whole lines of float32 (NOTE: [cpu streamed transposes]): both
          // sides streamed in 16 x 16 tiles; storage starting 5 elements into a line; columns
          // of whole lines with a column stride of half a line (the gather in tiles, the
          // scatter through stored runs, NOTE: [cpu transposed runs]); and a matrix of several
          // tasks, cut between rows.
          random_tensor({48, 160}, dtype).t(),
          random_tensor({83, 208}, dtype).narrow(1, 5, 190).t(),
          random_tensor({64, 1000}, dtype).t(), random_tensor({512, 1536}, dtype).t(),
          // Through stored runs in blocks (NOTE: [cpu transposed runs]): 9 columns whose column
          // stride is whole lines (3 x 3 channels_last weights: the scatter too), and the same
          // starting 5 elements into a line (column stride 48: every run misaligned); 70 input
          // channels, transposed in slices of 32, 32 and 6 rows (kSliceRows); 1300
          // columns, cut into blocks of 512, 512 and 276 columns by 128 and 72 rows; 1024
          // columns of a whole-line stride (the scatter in tiles, scatter_add in two blocks);
          // 17 rows of 5000 columns (scatter_add in blocks of 3855 and 1145 columns, the
          // scatter in transpose_4's blocks: runs_pay); 3 rows (no runs at all).
          random_tensor({6, 32, 3, 3}, dtype).contiguous(at::MemoryFormat::ChannelsLast),
          random_tensor({5, 70, 3, 3}, dtype).contiguous(at::MemoryFormat::ChannelsLast),
          random_tensor({6, 48, 3, 3}, dtype)
              .contiguous(at::MemoryFormat::ChannelsLast)
              .narrow(1, 5, 32),
          random_tensor({1300, 200}, dtype).t(), random_tensor({1024, 160}, dtype).t(),
          random_tensor({5000, 17}, dtype).t(), random_tensor({700, 3}, dtype).t()};
}

// A 1-D tensor of n elements whose first element sits `offset` elements past an aligned start.
at::Tensor misaligned(std::int64_t n, std::int64_t offset, at::ScalarType dtype) {
  return at::empty({n + offset}, dtype).narrow(0, offset, n);
}

// The default tasks, and tasks of 3000 bytes moved (a few hundred elements, cut inside every
// copy but the smallest: the head and tail of each streamed piece fall mid-tensor) handed out
// statically.
const flatgather::CpuTuning kTunings[] = {{}, {3000, flatgather::CpuSchedule::Static}};

fgt::Options options(at::ScalarType flat, CpuStreaming mode,
                     const flatgather::CpuTuning& tuning = {}) {
  fgt::Options o;
  o.dtype = flat;
  o.num_threads = 2;
  o.cpu_streaming = mode;
  o.cpu_tuning = tuning;
  return o;
}

std::string label(at::ScalarType from, at::ScalarType to, CpuStreaming mode,
                  const flatgather::CpuTuning& tuning, int offset) {
  return std::string(c10::toString(from)) + " -> " + c10::toString(to) +
         (mode == CpuStreaming::On ? ", streaming on" : ", streaming off") + ", task_bytes " +
         std::to_string(tuning.task_bytes) + ", flat offset " + std::to_string(offset);
}

TEST(CpuStreaming, GatherEqualsCatOfReshape) {
  torch::manual_seed(24);
  for (const auto& [type, flat_type] : kPairs) {
    const std::vector<at::Tensor> tensors = make_tensors(type);
    const at::Tensor expected = reference_gather(tensors, flat_type);
    for (CpuStreaming mode : kModes) {
      for (const flatgather::CpuTuning& tuning : kTunings) {
        fgt::Plan plan = fgt::Plan::from_tensors(tensors, {}, options(flat_type, mode, tuning));
        for (int offset : {0, 1, 3}) {  // a destination off every vector and line boundary
          at::Tensor out = misaligned(plan.numel(), offset, flat_type);
          out.copy_(fgtest::poisoned(plan.numel(), flat_type));
          plan.gather(out);
          ASSERT_TRUE(bits_equal(out, expected)) << label(type, flat_type, mode, tuning, offset);
        }
      }
    }
  }
}

TEST(CpuStreaming, ScatterEqualsTo) {
  torch::manual_seed(25);
  for (const auto& [type, flat_type] : kPairs) {
    const std::vector<at::Tensor> tensors = make_tensors(type);
    std::int64_t numel = 0;
    for (const at::Tensor& t : tensors) numel += t.numel();
    for (CpuStreaming mode : kModes) {
      for (const flatgather::CpuTuning& tuning : kTunings) {
        for (int offset : {0, 3}) {
          at::Tensor flat = misaligned(numel, offset, flat_type);
          flat.copy_(random_tensor({numel}, flat_type));
          for (const at::Tensor& t : tensors) {  // poison: every element differs from the source
            t.fill_(at::isFloatingType(type) ? -1234.5 : 77);
          }
          fgt::Plan plan = fgt::Plan::from_tensors(tensors, {}, options(flat_type, mode, tuning));
          plan.scatter(flat);
          std::int64_t at_elem = 0;
          for (std::size_t i = 0; i < tensors.size(); ++i) {
            const at::Tensor& t = tensors[i];
            const at::Tensor expected = flat.narrow(0, at_elem, t.numel()).view(t.sizes()).to(type);
            ASSERT_TRUE(bits_equal(t, expected))
                << "tensor " << i << ", " << label(flat_type, type, mode, tuning, offset);
            at_elem += t.numel();
          }
        }
      }
    }
  }
}

// float32 bits whose bfloat16 rounding is at an edge: ties to even (down and up), the largest
// finite values (one rounds to infinity), infinities, signed zeros, subnormals, and NaNs of every
// sign and payload, including ones whose rounding bias would carry into the exponent.
const std::uint32_t kBFloat16EdgeBits[] = {
    0x3F808000u, 0x3F818000u, 0x3F807FFFu, 0x3F808001u, 0xBF808000u, 0xBF818000u, 0x7F7F7FFFu,
    0x7F7F8000u, 0x7F7FFFFFu, 0xFF7FFFFFu, 0x7F800000u, 0xFF800000u, 0x00000000u, 0x80000000u,
    0x00008000u, 0x00018000u, 0x807FFFFFu, 0x00000001u, 0x7F800001u, 0x7FC00000u, 0xFFC00000u,
    0x7FFFFFFFu, 0xFFFFFFFFu, 0x7F808000u, 0xFF80FFFFu, 0x7FBF8000u};

// Contiguous float32 <-> bfloat16 copies (NOTE: [cpu bfloat16 vectors]: whole 64-byte lines
// in registers, the ends element by element) of every length around a line, at every
// alignment, with the edge values above at random places among random values with specials:
// gather and scatter both ways, streaming on and off, give LibTorch's bits, and every NaN
// rounded from float32 is 0xFFFF (kBFloat16NanFromFloat, what LibTorch's CPU cast writes);
// scatter_add gives reference_add_scaled's.
TEST(CpuStreaming, BFloat16VectorsGiveLibTorchBits) {
  std::mt19937_64 rng(27);
  auto values = [&](std::int64_t n, std::int64_t offset, at::ScalarType dtype) {
    at::Tensor f = fgtest::random_with_specials(rng, n, at::kFloat, true);
    auto* bits = static_cast<std::uint32_t*>(f.data_ptr());
    for (int k = 0; k < 6 && n > 0; ++k) {
      bits[rng() % n] = kBFloat16EdgeBits[rng() % std::size(kBFloat16EdgeBits)];
    }
    return misaligned(n, offset, dtype).copy_(f.to(dtype));
  };
  auto nans_are_canonical = [](const at::Tensor& t) {
    const at::Tensor c = t.contiguous();
    const auto* bits = static_cast<const std::uint16_t*>(c.data_ptr());
    const at::Tensor nan = c.isnan();
    for (std::int64_t i = 0; i < c.numel(); ++i) {
      if (nan[i].item<bool>() && bits[i] != 0xFFFFu) return false;
    }
    return true;
  };
  const std::int64_t kLengths[] = {1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4099, 70001};
  for (const auto& [type, flat_type] :
       {std::pair{at::kBFloat16, at::kFloat}, std::pair{at::kFloat, at::kBFloat16}}) {
    std::vector<at::Tensor> tensors;
    int offset = 0;
    for (std::int64_t n : kLengths) tensors.push_back(values(n, offset++ % 4, type));
    const at::Tensor expected = reference_gather(tensors, flat_type);
    const std::int64_t numel = expected.numel();
    const at::Tensor source = values(numel, 0, flat_type);
    for (CpuStreaming mode : kModes) {
      for (const flatgather::CpuTuning& tuning : kTunings) {
        fgt::Plan plan = fgt::Plan::from_tensors(tensors, {}, options(flat_type, mode, tuning));
        for (int flat_offset : {0, 1, 3}) {
          at::Tensor out = misaligned(numel, flat_offset, flat_type);
          out.copy_(fgtest::poisoned(numel, flat_type));
          plan.gather(out);
          ASSERT_TRUE(bits_equal(out, expected))
              << "gather, " << label(type, flat_type, mode, tuning, flat_offset);
          if (flat_type == at::kBFloat16) {
            ASSERT_TRUE(nans_are_canonical(out));
          }
        }
        std::vector<at::Tensor> targets;
        for (const at::Tensor& t : tensors) {
          targets.push_back(misaligned(t.numel(), targets.size() % 3, type).fill_(-1234.5));
        }
        fgt::Plan back = fgt::Plan::from_tensors(targets, {}, options(flat_type, mode, tuning));
        back.scatter(source);
        std::int64_t at_elem = 0;
        for (std::size_t i = 0; i < targets.size(); ++i) {
          const at::Tensor want = source.narrow(0, at_elem, targets[i].numel()).to(type);
          ASSERT_TRUE(bits_equal(targets[i], want))
              << "scatter into tensor " << i << ", " << label(flat_type, type, mode, tuning, 0);
          if (type == at::kBFloat16) {
            ASSERT_TRUE(nans_are_canonical(targets[i])) << "tensor " << i;
          }
          at_elem += targets[i].numel();
        }
        // scatter_add on top (never streamed; the same vectors): t + 0.37 * v, rounded once.
        std::vector<at::Tensor> before;
        for (const at::Tensor& t : targets) before.push_back(t.clone());
        back.scatter_add(source, 0.37);
        at_elem = 0;
        for (std::size_t i = 0; i < targets.size(); ++i) {
          const at::Tensor v = source.narrow(0, at_elem, targets[i].numel());
          ASSERT_TRUE(bits_equal(targets[i], fgtest::reference_add_scaled(before[i], v, 0.37)))
              << "scatter_add into tensor " << i << ", " << label(flat_type, type, mode, tuning, 0);
          at_elem += targets[i].numel();
        }
      }
    }
  }
}

// scatter_add never streams (it reads its destination), whatever the option says: the same
// bits either way, with the default tasks and tiny ones, and LibTorch's: with alpha = 1, t + v
// rounded once in the wider type; with 0.37, reference_add_scaled's one fma per element.
TEST(CpuStreaming, ScatterAddIsUnchanged) {
  torch::manual_seed(26);
  for (const auto& [type, flat_type] :
       {std::pair{at::kFloat, at::kFloat}, std::pair{at::kBFloat16, at::kFloat}}) {
    const std::vector<at::Tensor> start = make_tensors(type);
    std::int64_t numel = 0;
    for (const at::Tensor& t : start) numel += t.numel();
    const at::Tensor flat = random_tensor({numel}, flat_type);
    for (CpuStreaming mode : kModes) {
      for (const flatgather::CpuTuning& tuning : kTunings) {
        for (double alpha : {1.0, 0.37}) {
          std::vector<at::Tensor> tensors;
          for (const at::Tensor& t : start) {
            tensors.push_back(at::empty_strided(t.sizes(), t.strides(), t.options()).copy_(t));
          }
          fgt::Plan plan = fgt::Plan::from_tensors(tensors, {}, options(flat_type, mode, tuning));
          plan.scatter_add(flat, alpha);
          std::int64_t at_elem = 0;
          for (std::size_t i = 0; i < tensors.size(); ++i) {
            const at::Tensor v = flat.narrow(0, at_elem, start[i].numel()).view(start[i].sizes());
            const at::Tensor expected = alpha == 1.0
                                            ? (start[i].to(at::kFloat) + v).to(type)
                                            : fgtest::reference_add_scaled(start[i], v, alpha);
            ASSERT_TRUE(bits_equal(tensors[i], expected))
                << "tensor " << i << ", alpha " << alpha << ", "
                << label(flat_type, type, mode, tuning, 0);
            at_elem += start[i].numel();
          }
        }
      }
    }
  }
}

// describe() says which ops stream; Auto streams both here when these tensors' bytes (the
// destination of either op: same type, a few MB) exceed the threshold it prints (an eighth of
// the LLC: 4 MiB on a 32 MiB L3, so both; neither on a 260 MiB one), unless
// FLATGATHER_CPU_STREAMING says otherwise: CTest runs this test once more with it set to "on"
// and once with an invalid value.
TEST(CpuStreaming, DescribeAndEnvironment) {
  const std::vector<at::Tensor> tensors = make_tensors(at::kFloat);
  auto describe = [&](CpuStreaming mode) {
    return fgt::Plan::from_tensors(tensors, {}, options(at::kFloat, mode)).core().describe();
  };
  EXPECT_NE(describe(CpuStreaming::On).find("streaming=gather+scatter"), std::string::npos);
  EXPECT_NE(describe(CpuStreaming::Off).find("streaming=off"), std::string::npos);
  const char* env = std::getenv("FLATGATHER_CPU_STREAMING");
  const std::string value = env ? env : "";
  if (value.empty() || value == "auto") {
    const std::string auto_text = describe(CpuStreaming::Auto);
    const std::string marker = "(auto: above ";
    const std::size_t at = auto_text.find(marker);
    ASSERT_NE(at, std::string::npos) << auto_text;
    const std::int64_t threshold = std::stoll(auto_text.substr(at + marker.size()));
    std::int64_t bytes = 0;
    for (const at::Tensor& t : tensors) bytes += t.numel() * 4;
    ASSERT_GT(threshold, 0) << auto_text;
    const char* expected = bytes > threshold ? "streaming=gather+scatter" : "streaming=off";
    EXPECT_NE(auto_text.find(expected), std::string::npos)
        << auto_text << " for " << bytes << " B of tensors";
  } else if (value == "off") {
    EXPECT_NE(describe(CpuStreaming::Auto).find("streaming=off"), std::string::npos);
  } else if (value == "on") {
    EXPECT_NE(describe(CpuStreaming::Auto).find("streaming=gather+scatter"), std::string::npos);
  } else {
    EXPECT_THROW_MSG(describe(CpuStreaming::Auto), "FLATGATHER_CPU_STREAMING is '",
                     "use auto, on or off");
  }
}

// Auto streams a destination above the threshold describe() prints (an eighth of the LLC)
// and not one at it. Above it, a narrowing gather (float32 tensors -> bfloat16 flat), a
// narrowing scatter (float32 flat -> bfloat16 tensors) and the same-type copies all stream and
// give LibTorch's bits.
TEST(CpuStreaming, AutoStreamsAboveTheThresholdItDescribes) {
  const char* env = std::getenv("FLATGATHER_CPU_STREAMING");
  if (env && *env && std::string(env) != "auto") GTEST_SKIP() << "FLATGATHER_CPU_STREAMING is set";
  torch::manual_seed(31);
  auto plan_of = [](const std::vector<at::Tensor>& tensors, at::ScalarType flat) {
    return fgt::Plan::from_tensors(tensors, {}, options(flat, CpuStreaming::Auto));
  };
  const std::string small =
      plan_of({random_tensor({1000}, at::kFloat)}, at::kFloat).core().describe();
  const std::string key = "(auto: above ";
  const std::size_t at = small.find(key);
  ASSERT_NE(at, std::string::npos) << small;
  const std::int64_t threshold = std::stoll(small.substr(at + key.size()));
  ASSERT_GT(threshold, 1 << 20) << small;
  EXPECT_NE(small.find("streaming=off"), std::string::npos) << small;
  // Two tensors of `dtype` with `bytes` bytes together (a multiple of 8).
  auto tensors_of = [](std::int64_t bytes, at::ScalarType dtype) {
    const std::int64_t n = bytes / at::elementSize(dtype);
    return std::vector<at::Tensor>{random_tensor({n / 3}, dtype),
                                   random_tensor({n - n / 3}, dtype)};
  };
  const std::int64_t at_bytes = threshold / 8 * 8;
  EXPECT_NE(
      plan_of(tensors_of(at_bytes, at::kFloat), at::kFloat).core().describe().find("streaming=off"),
      std::string::npos);
  const std::vector<at::Tensor> above = tensors_of(at_bytes + 64, at::kFloat);
  for (const at::ScalarType flat_type : {at::kFloat, at::kBFloat16}) {
    const fgt::Plan plan = plan_of(above, flat_type);
    // A bfloat16 flat buffer is half the bytes: below the threshold, so only scatter streams.
    const char* expected_mode =
        flat_type == at::kFloat ? "streaming=gather+scatter" : "streaming=scatter";
    EXPECT_NE(plan.core().describe().find(expected_mode), std::string::npos)
        << plan.core().describe();
    at::Tensor flat = fgtest::poisoned(plan.numel(), flat_type);
    plan.gather(flat);
    ASSERT_TRUE(bits_equal(flat, reference_gather(above, flat_type))) << c10::toString(flat_type);
  }
  // bfloat16 tensors of more than the threshold's bytes, scattered from a float32 flat buffer.
  const std::vector<at::Tensor> targets = tensors_of(at_bytes + 64, at::kBFloat16);
  const fgt::Plan plan = plan_of(targets, at::kFloat);
  EXPECT_NE(plan.core().describe().find("streaming=gather+scatter"), std::string::npos)
      << plan.core().describe();
  const at::Tensor source = random_tensor({plan.numel()}, at::kFloat);
  for (const at::Tensor& t : targets) t.fill_(-1234.5);  // poison
  plan.scatter(source);
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const at::Tensor expected =
        source.narrow(0, offset, targets[i].numel()).view(targets[i].sizes()).to(at::kBFloat16);
    ASSERT_TRUE(bits_equal(targets[i], expected)) << "tensor " << i;
    offset += targets[i].numel();
  }
}

// PlanOptions::cpu_tuning: describe() reports it, and Plan::build rejects what it cannot run
// with a message that names the field and the valid values.
TEST(CpuTuning, DescribeAndBadValues) {
  const std::vector<at::Tensor> tensors = make_tensors(at::kFloat);
  auto describe = [&](const flatgather::CpuTuning& tuning) {
    return fgt::Plan::from_tensors(tensors, {}, options(at::kFloat, CpuStreaming::Off, tuning))
        .core()
        .describe();
  };
  // These tensors move under kCpuDefaultTasks * kCpuMinTaskBytes: the smallest default task.
  EXPECT_NE(describe({}).find("task_bytes=" + std::to_string(flatgather::kCpuMinTaskBytes) +
                              ", schedule=dynamic"),
            std::string::npos);
  EXPECT_NE(
      describe({4096, flatgather::CpuSchedule::Static}).find("task_bytes=4096, schedule=static"),
      std::string::npos);
  EXPECT_THROW_MSG(describe({-1, flatgather::CpuSchedule::Dynamic}),
                   "cpu_tuning.task_bytes must be 0 (the default: 262144 to 4194304 by the "
                   "call's size) or a positive number",
                   "got -1");
  EXPECT_THROW_MSG(describe({0, static_cast<flatgather::CpuSchedule>(7)}),
                   "cpu_tuning.schedule must be CpuSchedule::Dynamic or CpuSchedule::Static",
                   "got 7");
}

// The default task size follows the call (NOTE: [cpu work split]): its bytes moved divided by
// kCpuDefaultTasks, between kCpuMinTaskBytes and kCpuTaskBytes. Below, at and above both ends;
// the largest plan (290 MB moved by a gather of float32, 4 MiB tasks cut through a 128 MiB
// matrix, a transposed one and odd ends) still gives LibTorch's bits on gather, scatter and
// scatter_add.
TEST(CpuTuning, DefaultTaskSizeFollowsTheCall) {
  auto task_bytes = [](const fgt::Plan& plan) {
    const std::string text = plan.core().describe();
    const std::string marker = "task_bytes=";
    const std::size_t at = text.find(marker);
    EXPECT_NE(at, std::string::npos) << text;
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + marker.size()));
  };
  auto plan_of = [](const std::vector<at::Tensor>& tensors) {
    return fgt::Plan::from_tensors(tensors, {}, options(at::kFloat, CpuStreaming::Off));
  };
  // float32 into float32 moves 8 bytes per element.
  const std::int64_t min_elems = flatgather::kCpuDefaultTasks * flatgather::kCpuMinTaskBytes / 8;
  const std::int64_t max_elems = flatgather::kCpuDefaultTasks * flatgather::kCpuTaskBytes / 8;
  torch::manual_seed(28);
  EXPECT_EQ(task_bytes(plan_of({random_tensor({min_elems - 1}, at::kFloat)})),
            flatgather::kCpuMinTaskBytes);
  EXPECT_EQ(task_bytes(plan_of({random_tensor({min_elems}, at::kFloat)})),
            flatgather::kCpuMinTaskBytes);
  const std::int64_t mid = 3 * min_elems + 5;  // 8 * mid / 64 bytes, rounded down
  EXPECT_EQ(task_bytes(plan_of({random_tensor({mid}, at::kFloat)})), mid / 8);
  EXPECT_EQ(task_bytes(plan_of({random_tensor({max_elems}, at::kFloat)})),
            flatgather::kCpuTaskBytes);

  const std::vector<at::Tensor> start = {random_tensor({max_elems + 4099}, at::kFloat),
                                         random_tensor({1300, 2000}, at::kFloat).t(),
                                         random_tensor({70001}, at::kFloat)};
  std::vector<at::Tensor> tensors;
  for (const at::Tensor& t : start) {
    tensors.push_back(at::empty_strided(t.sizes(), t.strides(), t.options()).copy_(t));
  }
  fgt::Plan plan = plan_of(tensors);
  ASSERT_EQ(task_bytes(plan), flatgather::kCpuTaskBytes);
  at::Tensor out = fgtest::poisoned(plan.numel(), at::kFloat);
  plan.gather(out);
  ASSERT_TRUE(bits_equal(out, reference_gather(tensors, at::kFloat)));
  const at::Tensor flat = random_tensor({plan.numel()}, at::kFloat);
  for (const at::Tensor& t : tensors) t.fill_(-1234.5);
  plan.scatter(flat);
  std::int64_t at_elem = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor v = flat.narrow(0, at_elem, tensors[i].numel()).view(tensors[i].sizes());
    ASSERT_TRUE(bits_equal(tensors[i], v)) << "scatter into tensor " << i;
    at_elem += tensors[i].numel();
  }
  for (std::size_t i = 0; i < tensors.size(); ++i) tensors[i].copy_(start[i]);
  plan.scatter_add(flat, 0.37);
  at_elem = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor v = flat.narrow(0, at_elem, tensors[i].numel()).view(tensors[i].sizes());
    ASSERT_TRUE(bits_equal(tensors[i], fgtest::reference_add_scaled(start[i], v, 0.37)))
        << "scatter_add into tensor " << i;
    at_elem += tensors[i].numel();
  }
}

}  // namespace
