"""Local SGD with periodic parameter averaging across processes, with flatgather.

Each process trains its own replica on its own data and, every `--period` steps, the replicas
are averaged. torch.distributed.algorithms.model_averaging's average_parameters does that with
a torch.cat into a new buffer, a divide, a full device synchronize, one all_reduce and
`p.data = slice`, which leaves every parameter aliased into that temporary buffer. Here one
Plan, built once, gathers into a persistent flat buffer, one all_reduce sums it, and scatter
copies the result back into the parameters' own storage: same numbers, no allocation per
average, parameters keep their storage (optimizer state, hooks and CUDA graphs stay valid).

    python3 examples/python/model_averaging.py [--steps 12] [--period 4] [--cpu]

Before training, each process also receives the whole module state of rank 0 (parameters
and batch-norm buffers: float32 and an int64 counter) in one broadcast of a byte buffer, as
DDP's start-up sync does, and that state is checked bit for bit against rank 0's original
state rebuilt independently in the launching process.

Starts 2 processes on 127.0.0.1 (NCCL when there is a GPU per process, else Gloo, on the GPU
when there is one) and checks, bit for bit, that the flatgather run equals torch's own
average_parameters run and a single-process simulation of both replicas. Exits non-zero on
any difference, or after --timeout seconds.
"""

import argparse
import datetime
import os
import socket
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.algorithms.model_averaging.utils import average_parameters
from torch.nn.utils import parameters_to_vector

import flatgather

WORLD_SIZE = 2


class FlatAverager:
    """Averages a module's parameters across the process group: one plan, one persistent
    flat buffer, one all_reduce, and a scatter back into the parameters' own storage."""

    def __init__(self, model, group=None):
        self.plan = flatgather.Plan.from_module(model)
        self.flat = self.plan.empty_flat().zero_()  # the alignment padding stays zero
        self.group = group

    def average(self):
        self.plan.gather(out=self.flat)
        # Divided before the sum, as average_parameters does; with a power-of-two world size
        # the division is exact, so the result is the true mean rounded once either way.
        self.flat.div_(dist.get_world_size(self.group))
        dist.all_reduce(self.flat, group=self.group)
        self.plan.scatter(self.flat)


class StateBroadcaster:
    """Sends rank `src`'s whole module state (parameters and buffers, every dtype) to every
    rank: one byte-plan gather on `src`, one broadcast, one scatter everywhere else."""

    def __init__(self, model, group=None):
        self.plan = flatgather.Plan.from_module(model, buffers=True, dtype=torch.uint8)
        self.flat = self.plan.empty_flat()
        self.group = group

    def broadcast(self, src=0):
        rank = dist.get_rank(self.group)
        if rank == src:
            self.plan.gather(out=self.flat)
        dist.broadcast(self.flat, src=src, group=self.group)
        if rank != src:
            self.plan.scatter(self.flat)


def make_bn_model(rank):
    """A small network with batch norm whose state differs on every rank: weights from a
    rank's own seed, running statistics moved and num_batches_tracked at rank + 1 after rank + 1
    forward passes in train mode. Built on the CPU, so the launcher can rebuild rank 0's."""
    torch.manual_seed(100 + rank)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(128, 4),
                                torch.nn.BatchNorm1d(4))
    model.train()
    with torch.no_grad():
        for _ in range(rank + 1):
            model(torch.randn(5, 3, 4, 4))
    return model


def state_bytes(model):
    """Every state_dict tensor's dtype, shape and bytes (on the CPU): what "bit for bit" compares."""
    return {name: (t.dtype, tuple(t.shape),
                   t.detach().cpu().reshape(-1).view(torch.uint8).clone())
            for name, t in model.state_dict().items()}


def make_model(device):
    torch.manual_seed(0)  # every replica starts from the same weights
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(),
                                torch.nn.Linear(32, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    return model.to(device)


def rank_batches(rank, steps, device):
    """This rank's data: different on every rank, the same in every run."""
    gen = torch.Generator().manual_seed(1000 + rank)
    return [(torch.randn(8, 16, generator=gen).to(device),
             torch.randn(8, 4, generator=gen).to(device)) for _ in range(steps)]


def local_sgd(model, batches, period, average):
    """Trains on `batches`, calling `average()` after every `period` steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step, (x, y) in enumerate(batches, 1):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        if step % period == 0:
            average()


def storage_of(model):
    return [(id(p), p.data_ptr()) for p in model.parameters()]


def worker(rank, init_method, backend, device_name, args, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(backend, init_method=init_method, rank=rank,
                            world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=60))
    try:
        device = torch.device(device_name)
        if device.type == "cuda" and backend == "nccl":
            device = torch.device("cuda", rank)
        bn_model = make_bn_model(rank).to(device)
        own_state = state_bytes(bn_model)
        StateBroadcaster(bn_model).broadcast(src=0)
        received_state = state_bytes(bn_model)

        batches = rank_batches(rank, args.steps, device)

        ours = make_model(device)
        averager = FlatAverager(ours)
        before = storage_of(ours)
        local_sgd(ours, batches, args.period, averager.average)

        theirs = make_model(device)
        their_before = storage_of(theirs)
        local_sgd(theirs, batches, args.period,
                  lambda: average_parameters(theirs.parameters(), None))

        after, their_after = storage_of(ours), storage_of(theirs)
        torch.save({
            "ours": parameters_to_vector(ours.parameters()).detach().cpu(),
            "theirs": parameters_to_vector(theirs.parameters()).detach().cpu(),
            "kept": sum(a == b for a, b in zip(before, after)),
            "their_same_object": sum(a[0] == b[0] for a, b in zip(their_before, their_after)),
            "their_moved": sum(a[1] != b[1] for a, b in zip(their_before, their_after)),
            "count": len(before),
            "own_state": own_state,
            "received_state": received_state,
        }, os.path.join(out_dir, "rank{}.pt".format(rank)))
    finally:
        dist.destroy_process_group()


def single_process(args, device):
    """Both replicas in this one process, averaged by hand: the reference for the runs."""
    torch.set_num_threads(1)
    replicas = [make_model(device) for _ in range(WORLD_SIZE)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in replicas]
    data = [rank_batches(rank, args.steps, device) for rank in range(WORLD_SIZE)]
    for step in range(args.steps):
        for model, optimizer, batches in zip(replicas, optimizers, data):
            x, y = batches[step]
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
        if (step + 1) % args.period == 0:
            with torch.no_grad():
                for params in zip(*(m.parameters() for m in replicas)):
                    mean = params[0] / WORLD_SIZE + params[1] / WORLD_SIZE
                    for p in params:
                        p.copy_(mean)
    return [parameters_to_vector(m.parameters()).detach().cpu() for m in replicas]


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="local SGD steps per process")
    parser.add_argument("--period", type=int, default=4, help="average every PERIOD steps")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU with a GPU present")
    parser.add_argument("--timeout", type=float, default=240, help="seconds before giving up")
    args = parser.parse_args()
    if args.steps % args.period != 0:
        parser.error("--steps must be a multiple of --period (the run ends with an average)")

    use_cuda = torch.cuda.is_available() and not args.cpu
    device = "cuda" if use_cuda else "cpu"
    backend = "gloo"
    if use_cuda and dist.is_nccl_available() and torch.cuda.device_count() >= WORLD_SIZE:
        backend = "nccl"
    # Loopback only: rendezvous on 127.0.0.1, and the collectives' sockets on lo too.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
    init_method = "tcp://127.0.0.1:{}".format(free_loopback_port())
    print("{}; {} processes, backend {}, {} on {}, {} steps, averaging every {}".format(
        flatgather.build_info(), WORLD_SIZE, backend, init_method, device, args.steps,
        args.period))

    with tempfile.TemporaryDirectory(prefix="flatgather-averaging-") as out_dir:
        start = time.monotonic()
        context = mp.spawn(worker, args=(init_method, backend, device, args, out_dir),
                           nprocs=WORLD_SIZE, join=False)
        while not context.join(timeout=1):
            if time.monotonic() - start > args.timeout:
                for process in context.processes:
                    process.terminate()
                sys.exit("model_averaging: timed out after {:.0f} s".format(args.timeout))
        results = [torch.load(os.path.join(out_dir, "rank{}.pt".format(rank)))
                   for rank in range(WORLD_SIZE)]
    simulated = single_process(args, device)

    state_failures = []
    rank0_state = state_bytes(make_bn_model(0))  # the reference, rebuilt here
    for rank, result in enumerate(results):
        got = result["received_state"]
        wrong = sorted(set(got) ^ set(rank0_state)) + [
            name for name, (dtype, shape, data) in rank0_state.items()
            if name in got and (got[name][:2] != (dtype, shape) or not torch.equal(got[name][2], data))]
        if wrong:
            state_failures.append("rank {}: state after the broadcast differs from rank 0's in {}".format(
                rank, wrong))
    changed = [name for name, (_, _, data) in results[1]["own_state"].items()
               if not torch.equal(data, rank0_state[name][2])]
    if not changed:
        state_failures.append("rank 1 started with rank 0's state: the broadcast check proves nothing")
    print("whole module state ({} tensors: {}; {} bytes) broadcast from rank 0 in one byte "
          "buffer; every rank equals rank 0's original bit for bit: {} (rank 1 started with {} of "
          "them different)".format(len(rank0_state),
                  ", ".join(sorted({str(d)[6:] for d, _, _ in rank0_state.values()})),
                  sum(data.numel() for _, _, data in rank0_state.values()),
                  "yes" if not state_failures else "NO", len(changed)))

    failures = []
    for rank, result in enumerate(results):
        if not torch.equal(result["ours"], result["theirs"]):
            failures.append("rank {}: flatgather differs from average_parameters".format(rank))
        if not torch.equal(result["ours"], simulated[rank]):
            failures.append("rank {}: flatgather differs from the single process".format(rank))
        if not torch.equal(result["ours"], results[0]["ours"]):
            failures.append("rank {}: replicas differ after the last average".format(rank))
        if result["kept"] != result["count"]:
            failures.append("rank {}: only {} of {} parameters kept their storage".format(
                rank, result["kept"], result["count"]))
    first = results[0]
    print("{} parameters ({} elements): after {} averages the flatgather run equals "
          "average_parameters and the single-process run bit for bit: {}".format(
              first["count"], first["ours"].numel(), args.steps // args.period,
              "yes" if not failures else "NO"))
    print("flatgather: {}/{} parameters kept their object and storage; average_parameters: "
          "{}/{} kept their object, {}/{} now point into its temporary buffer".format(
              first["kept"], first["count"], first["their_same_object"], first["count"],
              first["their_moved"], first["count"]))
    failures += state_failures
    if failures:
        sys.exit("model_averaging: FAILED\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
