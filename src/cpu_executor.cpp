// The multi-threaded CPU executor.
//
// NOTE: [cpu work split]
// At build time the copies are cut into tasks of about kTaskBytes bytes moved (read +
// written), so one huge tensor is split across every thread and ten thousand tiny ones are
// packed into a few tasks. A call runs the tasks with an OpenMP dynamic schedule, or on the
// calling thread when the whole copy is small or when the caller is already inside an OpenMP
// parallel region (LibTorch's intra-op pool), so threads are never oversubscribed.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "executor.h"
#include "flatgather/error.h"

namespace flatgather {
namespace detail {

namespace {

constexpr std::int64_t kTaskBytes = 256 * 1024;

// A piece of one copy: elements [begin, end) of copies[copy].
struct Piece {
  std::int32_t copy;
  std::int64_t begin;
  std::int64_t end;
};

// Calls f(flat_index, element_offset) for logical indices [begin, end) of a strided copy,
// walking the coordinates with carries instead of a division per element.
template <class F>
void for_each_strided(const CopyDesc& d, std::int64_t begin, std::int64_t end, F&& f) {
  std::int64_t coord[kMaxDims];
  std::int64_t rest = begin;
  std::int64_t offset = 0;
  for (int dim = d.ndim - 1; dim >= 0; --dim) {
    coord[dim] = rest % d.sizes[dim];
    rest /= d.sizes[dim];
    offset += coord[dim] * d.strides[dim];
  }
  const int inner = d.ndim - 1;
  const std::int64_t inner_size = d.sizes[inner];
  const std::int64_t inner_stride = d.strides[inner];
  std::int64_t i = begin;
  while (i < end) {
    const std::int64_t run = std::min(inner_size - coord[inner], end - i);
    for (std::int64_t k = 0; k < run; ++k) f(i + k, offset + k * inner_stride);
    i += run;
    offset += run * inner_stride;
    coord[inner] += run;
    for (int dim = inner; dim > 0 && coord[dim] == d.sizes[dim]; --dim) {
      offset -= coord[dim] * d.strides[dim];
      coord[dim] = 0;
      ++coord[dim - 1];
      offset += d.strides[dim - 1];
    }
  }
}

template <class F>
void for_each(const CopyDesc& d, std::int64_t begin, std::int64_t end, F&& f) {
  if (d.contiguous) {
    for (std::int64_t i = begin; i < end; ++i) f(i, i);
  } else {
    for_each_strided(d, begin, end, f);
  }
}

// Same-type element copies by size class.
template <int N>
struct Bytes {
  unsigned char b[N];
};

template <class Storage>
Storage* typed(void* p) {
  return static_cast<Storage*>(p);
}

enum class Op { Gather, Scatter, ScatterAdd };

template <class T, class F>
void run_piece(Op op, const CopyDesc& d, std::int64_t begin, std::int64_t end, void* flat_base,
               double alpha) {
  T* tensor = static_cast<T*>(d.data);
  F* flat = static_cast<F*>(flat_base) + d.flat_offset;
  switch (op) {
    case Op::Gather:
      for_each(d, begin, end, [&](std::int64_t i, std::int64_t e) { flat[i] = convert<F>(tensor[e]); });
      break;
    case Op::Scatter:
      for_each(d, begin, end, [&](std::int64_t i, std::int64_t e) { tensor[e] = convert<T>(flat[i]); });
      break;
    case Op::ScatterAdd:
      for_each(d, begin, end,
               [&](std::int64_t i, std::int64_t e) { tensor[e] = add_scaled(tensor[e], flat[i], alpha); });
      break;
  }
}

template <class T>
void run_same_type(Op op, const CopyDesc& d, std::int64_t begin, std::int64_t end, void* flat_base) {
  T* tensor = static_cast<T*>(d.data);
  T* flat = static_cast<T*>(flat_base) + d.flat_offset;
  if (d.contiguous) {
    const std::size_t bytes = static_cast<std::size_t>(end - begin) * sizeof(T);
    if (op == Op::Gather) {
      std::memcpy(flat + begin, tensor + begin, bytes);
    } else {
      std::memcpy(tensor + begin, flat + begin, bytes);
    }
    return;
  }
  if (op == Op::Gather) {
    for_each_strided(d, begin, end, [&](std::int64_t i, std::int64_t e) { flat[i] = tensor[e]; });
  } else {
    for_each_strided(d, begin, end, [&](std::int64_t i, std::int64_t e) { tensor[e] = flat[i]; });
  }
}

class CpuExecutor final : public Executor {
 public:
  explicit CpuExecutor(ExecutorInput in) : in_(std::move(in)) {
    const std::int64_t flat_size = dtype_size(in_.flat_dtype);
    std::int64_t budget = kTaskBytes;
    task_begin_.push_back(0);
    for (std::size_t c = 0; c < in_.copies.size(); ++c) {
      const CopyDesc& d = in_.copies[c];
      const std::int64_t per_elem = flat_size + (d.data ? dtype_size(d.dtype) : 0);
      std::int64_t begin = 0;
      while (begin < d.numel) {
        const std::int64_t fit = std::max<std::int64_t>(1, budget / per_elem);
        const std::int64_t end = std::min(d.numel, begin + fit);
        pieces_.push_back({static_cast<std::int32_t>(c), begin, end});
        budget -= (end - begin) * per_elem;
        total_bytes_ += (end - begin) * per_elem;
        begin = end;
        if (budget <= 0) {
          task_begin_.push_back(pieces_.size());
          budget = kTaskBytes;
        }
      }
    }
    if (task_begin_.back() != pieces_.size()) task_begin_.push_back(pieces_.size());
  }

  void gather(void* flat, cudaStream_t) const override { run(Op::Gather, flat, 1.0); }
  void scatter(const void* flat, cudaStream_t) const override {
    run(Op::Scatter, const_cast<void*>(flat), 1.0);
  }
  void scatter_add(const void* flat, double alpha, cudaStream_t) const override {
    run(Op::ScatterAdd, const_cast<void*>(flat), alpha);
  }

  void rebind(int segment, void* data, cudaStream_t) override {
    for (CopyDesc& d : in_.copies) {
      if (d.segment == segment) d.data = data;
    }
  }

  std::string describe() const override {
    std::ostringstream os;
    os << "cpu (threads=" << threads() << ", tasks=" << task_begin_.size() - 1
       << ", task_bytes=" << kTaskBytes << ")";
    return os.str();
  }

 private:
  int threads() const { return in_.num_threads > 0 ? in_.num_threads : omp_get_max_threads(); }

  void run(Op op, void* flat, double alpha) const {
    const std::int64_t tasks = static_cast<std::int64_t>(task_begin_.size()) - 1;
    const int nthreads = static_cast<int>(std::min<std::int64_t>(threads(), tasks));
    if (nthreads <= 1 || total_bytes_ < kTaskBytes || omp_in_parallel()) {
      for (std::int64_t t = 0; t < tasks; ++t) run_task(op, t, flat, alpha);
      return;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (std::int64_t t = 0; t < tasks; ++t) run_task(op, t, flat, alpha);
  }

  void run_task(Op op, std::int64_t task, void* flat, double alpha) const {
    for (std::size_t p = task_begin_[task]; p < task_begin_[task + 1]; ++p) {
      const Piece& piece = pieces_[p];
      run_copy(op, in_.copies[piece.copy], piece.begin, piece.end, flat, alpha);
    }
  }

  void run_copy(Op op, const CopyDesc& d, std::int64_t begin, std::int64_t end, void* flat,
                double alpha) const {
    const DType flat_dtype = in_.flat_dtype;
    if (!d.data) {  // padding or a missing tensor: zeros on gather, nothing otherwise
      if (op == Op::Gather) {
        const std::int64_t es = dtype_size(flat_dtype);
        std::memset(static_cast<char*>(flat) + (d.flat_offset + begin) * es, 0,
                    static_cast<std::size_t>((end - begin) * es));
      }
      return;
    }
    if (op != Op::ScatterAdd && d.dtype == flat_dtype) {
      switch (dtype_size(flat_dtype)) {
        case 1: return run_same_type<Bytes<1>>(op, d, begin, end, flat);
        case 2: return run_same_type<Bytes<2>>(op, d, begin, end, flat);
        case 4: return run_same_type<Bytes<4>>(op, d, begin, end, flat);
        default: return run_same_type<Bytes<8>>(op, d, begin, end, flat);
      }
    }
    // Plan::build and Plan::scatter_add have checked that both dtypes are floating.
    dispatch_floating(d.dtype, [&](auto tensor_type) {
      using T = decltype(tensor_type);
      dispatch_floating(flat_dtype, [&](auto flat_type) {
        using F = decltype(flat_type);
        run_piece<T, F>(op, d, begin, end, flat, alpha);
      });
    });
  }

  ExecutorInput in_;
  std::vector<Piece> pieces_;
  std::vector<std::size_t> task_begin_;  // task t runs pieces_[task_begin_[t], task_begin_[t+1])
  std::int64_t total_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Executor> make_cpu_executor(ExecutorInput input) {
  return std::make_unique<CpuExecutor>(std::move(input));
}

}  // namespace detail
}  // namespace flatgather
