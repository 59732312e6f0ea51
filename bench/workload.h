#pragma once
// The resident suite: a suite's tensors and flat buffers built on one device, in as many
// buffer sets as the cache rule asks for (NOTE: [honest timing] in timing.cpp).

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "devices.h"
#include "op.h"
#include "suites.h"

namespace fgbench {

using flatgather::detail::Op;
using flatgather::detail::op_name;

/// The three ops, in the order they run and are summarised.
constexpr Op kOps[] = {Op::Gather, Op::Scatter, Op::ScatterAdd};

/// scatter_add's alpha. 1, so that every compute order gives the same bits and the check
/// can be exact.
constexpr double kAlpha = 1.0;

/// Bytes one call of `op` reads plus writes: the same for every method.
std::int64_t bytes_moved(Op op, const Suite& suite);

at::Device to_device(Dev dev);

/// One copy of the suite's tensors and of its flat buffer.
struct BufferSet {
  std::vector<at::Tensor> tensors;
  at::Tensor flat;
};

class Method;

struct Workload {
  Dev dev = Dev::CPU;
  std::string suite_name;
  std::vector<std::int64_t> offsets;  // Suite::flat_offsets()
  std::vector<std::string> names;
  std::vector<BufferSet> sets;
  // The method of the benchmark running now (null after a failed check). Only one is kept:
  // benchmarks run one after another, and the 7B suite's roofline buffers alone are 40 GB.
  std::map<std::string, std::unique_ptr<Method>> methods;

  ~Workload();
};

/// The resident workload for (dev, suite), built on first use (the previous one is freed
/// first: one suite stays resident at a time). Tensors and flat buffers are random (seeded).
Workload& workload_for(Dev dev, const Suite& suite);

/// The resident workload, or null.
Workload* resident_workload();

/// Frees the resident suite.
void release_workload();

/// Per-tensor views of `flat`, shaped like the tensors and (in a byte plan) of their dtypes
/// (for the per-tensor peers and the check).
std::vector<at::Tensor> flat_views(const Workload& w, const Suite& suite, const at::Tensor& flat);

/// The parts whose torch::cat is the flat buffer: each tensor's t.reshape(-1) (viewed as bytes,
/// .view(uint8), in a byte plan), with zeros of the flat dtype where a byte plan pads before
/// a tensor of a larger element size (the zeros are allocated here).
std::vector<at::Tensor> cat_parts(const Workload& w, const Suite& suite,
                                  const std::vector<at::Tensor>& tensors);

}  // namespace fgbench
