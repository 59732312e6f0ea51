// Data-parallel SGD on LibTorch's c10d with flat gradients: each rank computes gradients on
// its shard of the batch, gathers them into one flat buffer per bucket, calls one allreduce
// per bucket, scatters the averaged gradient back and steps. ProcessGroupGloo on CPU over a
// TCPStore on 127.0.0.1; ProcessGroupNCCL for CUDA tensors (--device cuda, compiled only when
// LibTorch has NCCL).
//
// One binary, two roles:
//   data_parallel --launch 2 [--steps 20] [--bucket-bytes 0] [--deadline 90]
//       the launcher: hosts the TCPStore on 127.0.0.1 (a port picked by the kernel), starts
//       the ranks as processes of this same binary, stops them all if one dies or the
//       deadline passes, then checks that every rank holds bit-identical parameters, that
//       they are bit-identical to one process averaging the shards' gradients per tensor with
//       LibTorch ops (within rtol 1e-5 beyond 2 ranks, where the sum's order differs), and that
//       they match a single-process run on the full batch (rtol 1e-5, atol 1e-6). The checks
//       read parameters with torch::cat, never through flatgather. Exit 0 on success.
//   data_parallel --rank R --world-size N --port P --out DIR [--host H] [--serve-store 1]
//       one rank, as on a cluster: every rank connects to the TCPStore at --host:--port (the
//       head node); the rank given --serve-store 1 (rank 0 there) hosts it.
//
// --bucket-bytes B   one flat buffer (and allreduce) per B bytes of gradients (0: one for all);
//                    every bucket's allreduce is issued before the first is waited on.
// --die-rank R --die-step S   rank R exits at step S (tests that the launcher fails fast).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "flatgather/torch.h"

extern char** environ;

namespace fg = flatgather::torch;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kSeed = 77;
constexpr std::int64_t kFeatures = 16;
constexpr std::int64_t kClasses = 4;
constexpr std::int64_t kSamples = 1024;
constexpr std::int64_t kGlobalBatch = 64;  // split evenly over the ranks
constexpr double kLearningRate = 0.1;
constexpr double kMomentum = 0.9;
// Short timeouts, so that a dead peer turns into an error on the others within seconds.
constexpr std::chrono::milliseconds kStoreTimeout = 20s;
constexpr std::chrono::milliseconds kCollectiveTimeout = 20s;

struct MlpImpl : torch::nn::Module {
  MlpImpl()
      : fc1(register_module("fc1", torch::nn::Linear(kFeatures, 64))),
        fc2(register_module("fc2", torch::nn::Linear(64, 64))),
        fc3(register_module("fc3", torch::nn::Linear(64, kClasses))) {}
  torch::Tensor forward(torch::Tensor x) {
    return fc3->forward(torch::tanh(fc2->forward(torch::tanh(fc1->forward(x)))));
  }
  torch::nn::Linear fc1, fc2, fc3;
};
TORCH_MODULE(Mlp);

struct Data {
  torch::Tensor x, y;
};

// The same synthetic data set on every rank (fixed seed); each rank reads only its shard.
Data make_data() {
  torch::manual_seed(kSeed + 1000);
  Data d;
  d.x = torch::randn({kSamples, kFeatures});
  d.y = d.x.matmul(torch::randn({kFeatures, kClasses})).argmax(1);
  return d;
}

struct Args {
  int launch = 0;  // > 0: launcher for this many ranks
  int rank = -1;
  int world_size = 1;
  std::string host = "127.0.0.1";
  int port = 0;
  std::string out;
  bool serve_store = false;  // this rank hosts the TCPStore (multi-node runs)
  int steps = 20;
  std::int64_t bucket_bytes = 0;
  int deadline_s = 90;
  int die_rank = -1;
  int die_step = -1;
  std::string device = "cpu";
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "data_parallel: " << why
            << "\nusage: data_parallel --launch N [--steps S] [--bucket-bytes B] [--deadline SEC]"
               " [--device cpu|cuda] [--die-rank R --die-step S]\n"
               "       data_parallel --rank R --world-size N --port P --out DIR [--host H]"
               " [--serve-store 1] [...]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage("missing value after " + k);
    const std::string v = argv[++i];
    if (k == "--launch")
      a.launch = std::stoi(v);
    else if (k == "--rank")
      a.rank = std::stoi(v);
    else if (k == "--world-size")
      a.world_size = std::stoi(v);
    else if (k == "--host")
      a.host = v;
    else if (k == "--port")
      a.port = std::stoi(v);
    else if (k == "--out")
      a.out = v;
    else if (k == "--serve-store")
      a.serve_store = v == "1";
    else if (k == "--steps")
      a.steps = std::stoi(v);
    else if (k == "--bucket-bytes")
      a.bucket_bytes = std::stoll(v);
    else if (k == "--deadline")
      a.deadline_s = std::stoi(v);
    else if (k == "--die-rank")
      a.die_rank = std::stoi(v);
    else if (k == "--die-step")
      a.die_step = std::stoi(v);
    else if (k == "--device")
      a.device = v;
    else
      usage("unknown option " + k);
  }
  if (a.launch <= 0 && a.rank < 0) usage("give --launch N or --rank R");
  if (a.rank >= 0 && (a.world_size < 1 || a.rank >= a.world_size || a.port <= 0 || a.out.empty()))
    usage("a rank needs 0 <= --rank < --world-size, --port and --out");
  if (kGlobalBatch % std::max(1, std::max(a.launch, a.world_size)) != 0)
    usage("the global batch (" + std::to_string(kGlobalBatch) +
          ") must split evenly over the ranks");
  if (a.device != "cpu" && a.device != "cuda") usage("--device is cpu or cuda");
  return a;
}

// The collectives this example needs, bound to whichever process group the backend made
// (c10d's base class differs across LibTorch versions; the calls do not).
struct Comm {
  std::string backend;
  std::int64_t align_bytes = 0;
  std::function<c10::intrusive_ptr<c10d::Work>(std::vector<at::Tensor>&)> allreduce_sum;
  std::function<c10::intrusive_ptr<c10d::Work>(std::vector<at::Tensor>&)> broadcast_from_0;
};

template <typename Group>
void bind(Comm& comm, c10::intrusive_ptr<Group> pg) {
  comm.allreduce_sum = [pg](std::vector<at::Tensor>& t) {
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    return pg->allreduce(t, o);
  };
  comm.broadcast_from_0 = [pg](std::vector<at::Tensor>& t) {
    c10d::BroadcastOptions o;
    o.rootRank = 0;
    return pg->broadcast(t, o);
  };
}

Comm make_comm(const c10::intrusive_ptr<c10d::Store>& store, const Args& a) {
  Comm comm;
  if (a.device == "cpu") {
#ifdef USE_C10D_GLOO
    auto opts = c10d::ProcessGroupGloo::Options::create(kCollectiveTimeout);
    // Loopback for a local run; across machines, the interface named by GLOO_SOCKET_IFNAME
    // or else the address this machine's hostname resolves to.
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (a.host == "127.0.0.1") {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(a.host));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    bind(comm, c10::make_intrusive<c10d::ProcessGroupGloo>(store, a.rank, a.world_size, opts));
    comm.backend = "gloo";
    // Gloo reduces on the CPU: align segments to a cache line, so no two tensors share one and
    // the flat copies run on whole vectors.
    comm.align_bytes = 64;
    return comm;
#else
    throw std::runtime_error("this LibTorch has no Gloo; run with --device cuda");
#endif
  }
#ifdef USE_C10D_NCCL
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = kCollectiveTimeout;
  bind(comm, c10::make_intrusive<c10d::ProcessGroupNCCL>(store, a.rank, a.world_size, opts));
  comm.backend = "nccl";
  // NCCL and the CUDA caching allocator work in 256-byte units; aligned segments let the
  // gather/scatter kernels use 16-byte vector loads throughout.
  comm.align_bytes = 256;
  return comm;
#else
  throw std::runtime_error("this LibTorch has no NCCL; run with --device cpu");
#endif
}

// Groups the parameters, in order, into buckets of at most `bucket_bytes` of gradient (a
// parameter larger than that gets a bucket of its own); 0 puts all of them in one bucket.
std::vector<std::vector<std::string>> make_buckets(const torch::nn::Module& model,
                                                   std::int64_t bucket_bytes) {
  std::vector<std::vector<std::string>> buckets(1);
  std::int64_t bytes = 0;
  for (const auto& p : model.named_parameters()) {
    const std::int64_t n = p.value().numel() * static_cast<std::int64_t>(p.value().element_size());
    if (bucket_bytes > 0 && !buckets.back().empty() && bytes + n > bucket_bytes) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(p.key());
    bytes += n;
  }
  return buckets;
}

// One bucket: a plan over some gradients (built once) and the flat buffer it reduces.
struct Bucket {
  fg::Plan plan;
  torch::Tensor flat;
};

std::vector<Bucket> make_grad_buckets(const torch::nn::Module& model, const Comm& comm,
                                      std::int64_t bucket_bytes) {
  std::vector<Bucket> out;
  for (const auto& names : make_buckets(model, bucket_bytes)) {
    fg::Selection s;
    s.grads = true;
    s.missing_grad = fg::MissingGrad::ZeroFill;  // built before the first backward
    s.include = names;                           // exact names are globs that match themselves
    fg::Options o;
    o.align_bytes = comm.align_bytes;
    Bucket b;
    b.plan = fg::Plan::from_module(model, s, o);
    b.flat = b.plan.empty_flat();
    out.push_back(std::move(b));
  }
  return out;
}

torch::Tensor train_step_loss(Mlp& model, const torch::Tensor& x, const torch::Tensor& y) {
  model->zero_grad(/*set_to_none=*/true);  // fresh gradients each step: the plans rebind
  torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
  loss.backward();
  return loss;
}

// The parameters in order as one CPU tensor, flattened with LibTorch alone: the checks never
// read them through the plans under test.
torch::Tensor flatten_parameters(const torch::nn::Module& model) {
  std::vector<torch::Tensor> pieces;
  for (const auto& p : model.parameters()) pieces.push_back(p.detach().cpu().reshape(-1));
  return torch::cat(pieces);
}

// ---- one rank ----------------------------------------------------------------------------
int run_rank(const Args& a) {
  torch::set_num_threads(1);  // the ranks share the machine's cores
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(a.port);
  so.isServer = a.serve_store;
  so.waitWorkers = false;
  so.timeout = kStoreTimeout;
  auto store = c10::make_intrusive<c10d::TCPStore>(a.host, so);
  Comm comm = make_comm(store, a);
  const torch::Device device =
      a.device == "cuda"
          ? torch::Device(torch::kCUDA, a.rank % std::max<int>(1, torch::cuda::device_count()))
          : torch::Device(torch::kCPU);

  // Deliberately different initial weights per rank; one flat broadcast from rank 0 makes
  // them equal, as a real job would after loading a checkpoint on rank 0.
  torch::manual_seed(kSeed + static_cast<std::uint64_t>(a.rank));
  Mlp model;
  model->to(device);
  const fg::Plan weights = fg::Plan::from_module(*model);
  {
    std::vector<at::Tensor> flat{weights.gather()};
    comm.broadcast_from_0(flat)->wait();
    weights.scatter(flat[0]);
  }

  std::vector<Bucket> buckets = make_grad_buckets(*model, comm, a.bucket_bytes);
  if (a.rank == 0) {
    std::cout << "rank 0: backend " << comm.backend << ", " << a.world_size << " ranks, "
              << buckets.size() << " bucket(s), align_bytes " << comm.align_bytes << "\n";
  }

  const Data data = make_data();
  const std::int64_t shard = kGlobalBatch / a.world_size;
  torch::optim::SGD opt(model->parameters(),
                        torch::optim::SGDOptions(kLearningRate).momentum(kMomentum));
  const std::int64_t batches = kSamples / kGlobalBatch;
  for (int step = 0; step < a.steps; ++step) {
    if (a.rank == a.die_rank && step == a.die_step) {
      std::cerr << "rank " << a.rank << ": exiting at step " << step << " (--die-rank)\n";
      std::_Exit(3);
    }
    const std::int64_t first = (step % batches) * kGlobalBatch + a.rank * shard;
    const torch::Tensor x = data.x.narrow(0, first, shard).to(device);
    const torch::Tensor y = data.y.narrow(0, first, shard).to(device);
    const torch::Tensor loss = train_step_loss(model, x, y);

    // Gather every bucket and start its allreduce; then wait, average and scatter each.
    std::vector<c10::intrusive_ptr<c10d::Work>> work;
    std::vector<std::vector<at::Tensor>> args;
    args.reserve(buckets.size());
    for (Bucket& b : buckets) {
      b.plan.gather(b.flat);
      args.push_back({b.flat});
      work.push_back(comm.allreduce_sum(args.back()));
    }
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      work[i]->wait(kCollectiveTimeout);
      buckets[i].flat.div_(a.world_size);
      buckets[i].plan.scatter(buckets[i].flat);
    }
    opt.step();
    if (a.rank == 0 && (step % 5 == 0 || step == a.steps - 1)) {
      std::printf("rank 0: step %2d  shard loss %.5f\n", step, loss.item<float>());
      std::fflush(stdout);
    }
  }
  torch::save(flatten_parameters(*model),
              (fs::path(a.out) / ("rank" + std::to_string(a.rank) + ".pt")).string());
  return 0;
}

// ---- the single-process reference: the same steps, without flatgather or c10d -----------
// Each step computes the gradient of every rank's shard in turn (one thread, as the ranks),
// sums them per tensor in rank order, divides by the world size and steps: what the ranks
// compute, bit for bit while a sum of two is the same in either order. With world_size 1 it is
// plain SGD on the full batch.
torch::Tensor reference_weights(int steps, int world_size) {
  torch::set_num_threads(1);
  torch::manual_seed(kSeed);  // rank 0's initial weights
  Mlp model;
  const Data data = make_data();
  torch::optim::SGD opt(model->parameters(),
                        torch::optim::SGDOptions(kLearningRate).momentum(kMomentum));
  std::vector<torch::Tensor> params = model->parameters();
  const std::int64_t batches = kSamples / kGlobalBatch;
  const std::int64_t shard = kGlobalBatch / world_size;
  for (int step = 0; step < steps; ++step) {
    std::vector<torch::Tensor> sum(params.size());
    for (int r = 0; r < world_size; ++r) {
      const std::int64_t first = (step % batches) * kGlobalBatch + r * shard;
      train_step_loss(model, data.x.narrow(0, first, shard), data.y.narrow(0, first, shard));
      for (std::size_t i = 0; i < params.size(); ++i)
        sum[i] = r == 0 ? params[i].grad().clone() : sum[i] + params[i].grad();
    }
    for (std::size_t i = 0; i < params.size(); ++i)
      params[i].mutable_grad() = sum[i].div_(world_size);
    opt.step();
  }
  return flatten_parameters(*model);
}

// ---- the launcher ------------------------------------------------------------------------
std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped";
}

int launch(const Args& a, const char* self) {
  char dir_template[] = "/tmp/flatgather-dp-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    std::perror("launcher: mkdtemp");
    return 1;
  }
  const fs::path out(dir_template);
  struct RemoveOnExit {  // on every return, failures included
    fs::path dir;
    ~RemoveOnExit() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } remove_out{out};

  // The store lives in the launcher on a port the kernel picks, so no port can be taken.
  c10d::TCPStoreOptions so;
  so.port = 0;
  so.isServer = true;
  so.waitWorkers = false;
  so.timeout = kStoreTimeout;
  auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", so);
  const int port = store->getPort();
  std::cout << "launcher: TCPStore on 127.0.0.1:" << port << ", " << a.launch << " ranks, "
            << a.steps << " steps, bucket bytes " << a.bucket_bytes << "\n";
  std::cout.flush();

  std::vector<pid_t> pids(a.launch, -1);
  std::vector<bool> done(a.launch, false);
  auto stop_all = [&] {
    for (int r = 0; r < a.launch; ++r) {
      if (pids[r] > 0 && !done[r]) {
        kill(pids[r], SIGKILL);
        waitpid(pids[r], nullptr, 0);
        done[r] = true;
      }
    }
  };
  for (int r = 0; r < a.launch; ++r) {
    std::vector<std::string> args = {self,
                                     "--rank",
                                     std::to_string(r),
                                     "--world-size",
                                     std::to_string(a.launch),
                                     "--port",
                                     std::to_string(port),
                                     "--out",
                                     out.string(),
                                     "--steps",
                                     std::to_string(a.steps),
                                     "--bucket-bytes",
                                     std::to_string(a.bucket_bytes),
                                     "--die-rank",
                                     std::to_string(a.die_rank),
                                     "--die-step",
                                     std::to_string(a.die_step),
                                     "--device",
                                     a.device};
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pids[r], self, nullptr, nullptr, argv.data(), environ);
    if (rc != 0) {
      std::cerr << "launcher: cannot start rank " << r << ": " << std::strerror(rc) << "\n";
      pids[r] = -1;
      stop_all();
      return 1;
    }
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a.deadline_s);
  int remaining = a.launch;
  while (remaining > 0) {
    bool failed = false;
    for (int r = 0; r < a.launch; ++r) {
      if (done[r]) continue;
      int status = 0;
      const pid_t got = waitpid(pids[r], &status, WNOHANG);
      if (got == 0) continue;
      done[r] = true;
      --remaining;
      if (got < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::cerr << "launcher: FAIL: rank " << r << " died: it " << describe_status(status)
                  << "\n";
        failed = true;
      }
    }
    if (failed) {
      std::cerr << "launcher: stopping the other ranks\n";
      stop_all();
      return 1;
    }
    if (remaining > 0 && std::chrono::steady_clock::now() > deadline) {
      for (int r = 0; r < a.launch; ++r) {
        if (!done[r]) {
          std::cerr << "launcher: FAIL: rank " << r << " did not finish within " << a.deadline_s
                    << " s; killing it\n";
        }
      }
      stop_all();
      return 1;
    }
    std::this_thread::sleep_for(20ms);
  }

  // Every rank finished: compare them with each other and with one process.
  int failures = 0;
  std::vector<torch::Tensor> finals(a.launch);
  for (int r = 0; r < a.launch; ++r)
    torch::load(finals[r], (out / ("rank" + std::to_string(r) + ".pt")).string());
  for (int r = 1; r < a.launch; ++r) {
    const bool same = torch::equal(finals[r].view(torch::kInt), finals[0].view(torch::kInt));
    std::cout << (same ? "ok    " : "FAIL  ") << "rank " << r
              << " holds bit-identical parameters to rank 0\n";
    failures += same ? 0 : 1;
  }
  // Gloo sums two ranks' gradients as a + b, the same bits in either order; beyond two the
  // order varies along the buffer, so the comparison allows for rounding.
  const torch::Tensor averaged = reference_weights(a.steps, a.launch);
  const bool exact = a.launch <= 2;
  const bool same = exact ? torch::equal(finals[0].view(torch::kInt), averaged.view(torch::kInt))
                          : torch::allclose(finals[0], averaged, 1e-5, 1e-6);
  std::cout << (same ? "ok    " : "FAIL  ") << "parameters are "
            << (exact ? "bit-identical" : "within rtol 1e-5, atol 1e-6")
            << " to one process averaging the " << a.launch
            << " shards' gradients per tensor with LibTorch (max |diff| "
            << (finals[0] - averaged).abs().max().item<double>() << ")\n";
  failures += same ? 0 : 1;
  const torch::Tensor full_batch = reference_weights(a.steps, 1);
  const double diff = (finals[0] - full_batch).abs().max().item<double>();
  const bool close = torch::allclose(finals[0], full_batch, 1e-5, 1e-6);
  std::cout << (close ? "ok    " : "FAIL  ")
            << "parameters match a single process on the full batch within rtol 1e-5, atol 1e-6 "
               "(max |diff| "
            << diff << ")\n";
  failures += close ? 0 : 1;
  std::cout << (failures == 0 ? "all checks passed" : "checks failed") << "\n";
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    if (a.launch > 0) {
      // /proc/self/exe: the ranks run this very binary, whatever the working directory.
      return launch(a, "/proc/self/exe");
    }
    return run_rank(a);
  } catch (const std::exception& e) {
    std::cerr << (a.launch > 0 ? std::string("launcher") : "rank " + std::to_string(a.rank))
              << ": error: " << e.what() << "\n";
    return 1;
  }
}
