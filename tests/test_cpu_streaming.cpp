// The CPU executor's streaming stores (NOTE: [cpu streaming stores]): with them forced on and
// forced off, gather, scatter and scatter_add give the bits LibTorch gives (torch::cat of
// reshape(-1), .to(dtype)), on odd sizes, misaligned sources and destinations, casts and
// strided tensors.
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

// Tensors of odd sizes (below a cache line, around the cast chunk, above a 256 KiB task),
// some at odd element offsets into their storage (misaligned sources on gather and
// destinations on scatter), and strided ones, which never stream.
std::vector<at::Tensor> make_tensors(at::ScalarType dtype) {
  auto at_offset = [&](std::int64_t offset, std::int64_t n) {
    return random_tensor({n + offset}, dtype).narrow(0, offset, n);
  };
  return {random_tensor({1}, dtype),
          at_offset(1, 3),
          random_tensor({17, 61}, dtype),
          at_offset(3, 4097),
          random_tensor({257, 1031}, dtype),  // 265 k elements: several tasks
          at_offset(5, 70001),
          random_tensor({33, 70}, dtype).t(),
          random_tensor({4, 3, 5, 5}, dtype).contiguous(at::MemoryFormat::ChannelsLast),
          at_offset(7, 123457)};
}

// A 1-D tensor of n elements whose first element sits `offset` elements past an aligned start.
at::Tensor misaligned(std::int64_t n, std::int64_t offset, at::ScalarType dtype) {
  return at::empty({n + offset}, dtype).narrow(0, offset, n);
}

fgt::Options options(at::ScalarType flat, CpuStreaming mode) {
  fgt::Options o;
  o.dtype = flat;
  o.num_threads = 2;
  o.cpu_streaming = mode;
  return o;
}

std::string label(at::ScalarType from, at::ScalarType to, CpuStreaming mode, int offset) {
  return std::string(c10::toString(from)) + " -> " + c10::toString(to) +
         (mode == CpuStreaming::On ? ", streaming on" : ", streaming off") + ", flat offset " +
         std::to_string(offset);
}

TEST(CpuStreaming, GatherEqualsCatOfReshape) {
  torch::manual_seed(24);
  for (const auto& [type, flat_type] : kPairs) {
    const std::vector<at::Tensor> tensors = make_tensors(type);
    const at::Tensor expected = reference_gather(tensors, flat_type);
    for (CpuStreaming mode : kModes) {
      fgt::Plan plan = fgt::Plan::from_tensors(tensors, {}, options(flat_type, mode));
      for (int offset : {0, 1, 3}) {  // a destination off every vector and line boundary
        at::Tensor out = misaligned(plan.numel(), offset, flat_type);
        out.copy_(fgtest::poisoned(plan.numel(), flat_type));
        plan.gather(out);
        ASSERT_TRUE(bits_equal(out, expected)) << label(type, flat_type, mode, offset);
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
      for (int offset : {0, 3}) {
        at::Tensor flat = misaligned(numel, offset, flat_type);
        flat.copy_(random_tensor({numel}, flat_type));
        for (const at::Tensor& t : tensors) {  // poison: every element differs from the source
          t.fill_(at::isFloatingType(type) ? -1234.5 : 77);
        }
        fgt::Plan plan = fgt::Plan::from_tensors(tensors, {}, options(flat_type, mode));
        plan.scatter(flat);
        std::int64_t at_elem = 0;
        for (std::size_t i = 0; i < tensors.size(); ++i) {
          const at::Tensor& t = tensors[i];
          const at::Tensor expected = flat.narrow(0, at_elem, t.numel()).view(t.sizes()).to(type);
          ASSERT_TRUE(bits_equal(t, expected))
              << "tensor " << i << ", " << label(flat_type, type, mode, offset);
          at_elem += t.numel();
        }
      }
    }
  }
}

// scatter_add never streams (it reads its destination), whatever the option says: the same
// bits either way, and LibTorch's: with alpha = 1, t + v rounded once in the wider type.
TEST(CpuStreaming, ScatterAddIsUnchanged) {
  torch::manual_seed(26);
  for (const auto& [type, flat_type] :
       {std::pair{at::kFloat, at::kFloat}, std::pair{at::kBFloat16, at::kFloat}}) {
    const std::vector<at::Tensor> start = make_tensors(type);
    std::int64_t numel = 0;
    for (const at::Tensor& t : start) numel += t.numel();
    const at::Tensor flat = random_tensor({numel}, flat_type);
    for (CpuStreaming mode : kModes) {
      std::vector<at::Tensor> tensors;
      for (const at::Tensor& t : start) {
        tensors.push_back(at::empty_strided(t.sizes(), t.strides(), t.options()).copy_(t));
      }
      fgt::Plan plan = fgt::Plan::from_tensors(tensors, {}, options(flat_type, mode));
      plan.scatter_add(flat, 1.0);
      std::int64_t at_elem = 0;
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        const at::Tensor v = flat.narrow(0, at_elem, start[i].numel()).view(start[i].sizes());
        const at::Tensor expected = (start[i].to(at::kFloat) + v).to(type);
        ASSERT_TRUE(bits_equal(tensors[i], expected))
            << "tensor " << i << ", " << label(flat_type, type, mode, 0);
        at_elem += start[i].numel();
      }
    }
  }
}

// describe() says which ops stream; Auto streams neither here (a few MB, far below any LLC
// this runs on) unless FLATGATHER_CPU_STREAMING says otherwise: CTest runs this test once
// more with it set to "on" and once with an invalid value.
TEST(CpuStreaming, DescribeAndEnvironment) {
  const std::vector<at::Tensor> tensors = make_tensors(at::kFloat);
  auto describe = [&](CpuStreaming mode) {
    return fgt::Plan::from_tensors(tensors, {}, options(at::kFloat, mode)).core().describe();
  };
  EXPECT_NE(describe(CpuStreaming::On).find("streaming=gather+scatter"), std::string::npos);
  EXPECT_NE(describe(CpuStreaming::Off).find("streaming=off"), std::string::npos);
  const char* env = std::getenv("FLATGATHER_CPU_STREAMING");
  const std::string value = env ? env : "";
  if (value.empty() || value == "auto" || value == "off") {
    EXPECT_NE(describe(CpuStreaming::Auto).find("streaming=off"), std::string::npos);
  } else if (value == "on") {
    EXPECT_NE(describe(CpuStreaming::Auto).find("streaming=gather+scatter"), std::string::npos);
  } else {
    EXPECT_THROW_MSG(describe(CpuStreaming::Auto), "FLATGATHER_CPU_STREAMING is '",
                     "use auto, on or off");
  }
}

}  // namespace
