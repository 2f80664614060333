"""PyTorch peer of bnorm-bench (run by it; Debian's /usr/bin/python3 with
python3-torch).

A server: bnorm-bench starts it once and sends it one line per request
over the --command-fd pipe, and it answers one line per request on
--reply-fd, so that PyTorch is timed in the same rounds as bnorm and
oneDNN (bench_time_runners in timing.c):

  hello VERSION                 (sent once, at the start)
  case INDEX PASS THREADS MIN_REP_S  ->  STATUS ERR CALLS
      rebuilds bnorm-bench's inputs of shape INDEX of the shapes file (same
      recipe as bench/data.c: splitmix64, exact binary fractions), runs the
      pass with torch.set_num_threads(THREADS) and checks its output against
      the samples of bnorm's outputs that bnorm-bench wrote to --workdir.
      STATUS: ok, mismatch or error; CALLS: calls per repetition (warm
      shapes: enough for MIN_REP_S seconds; cold: 1).
  time WARMUP COUNT  ->  ok SECONDS...
      times the last case that was ok: WARMUP untimed repetitions, then
      COUNT timed ones (cold shapes read a --scrub-bytes buffer before
      each); the seconds per call of each timed one.

The passes: torch.nn.functional.batch_norm (training and inference
forward) and aten::native_batch_norm_backward (the kernel autograd calls
for backward). NHWC tensors are channels_last NCHW views (no copies).
Messages go to stderr; the server ends at the end of the command pipe.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

PASSES = ("train", "infer", "bwd")
SEED_X, SEED_DY, SEED_GAMMA, SEED_BETA, SEED_MEAN, SEED_VAR = range(1, 7)
M64 = np.uint64


def set_pages(pages):
    """numpy asks for 2 MiB pages (MADV_HUGEPAGE) for its large arrays by
    default, and this server's inputs are numpy arrays, while bnorm-bench's C
    side takes the pages the system gives: a cold call reads x several
    percent faster from huge pages, so PyTorch would be timed on other
    pages than bnorm and oneDNN. numpy asks only with --pages huge, as
    bnorm-bench's --huge-pages does for its own arrays."""
    setter = getattr(np.core.multiarray, "_set_madvise_hugepage", None)
    if setter is not None:
        setter(pages == "huge")


def read_shapes(path):
    shapes = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].split()
            if not line:
                continue
            layout = line[0].upper()
            dims = [int(v) for v in line[1].lower().split("x")]
            cache = line[2] if len(line) > 2 else "cold"
            shapes.append((layout, dims, cache == "cold"))
    return shapes


def seed_of(index, what):
    return 1000 * (index + 1) + what


def mix(seed, n):
    """splitmix64 of elements 0..n-1, as data.c's mix()."""
    with np.errstate(over="ignore"):
        z = M64(seed) + (np.arange(n, dtype=np.uint64) + M64(1)) * M64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> M64(30))) * M64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> M64(27))) * M64(0x94D049BB133111EB)
        return z ^ (z >> M64(31))


def tensor_values(n, seed):
    k = (mix(seed, n) >> M64(40)).astype(np.int64) - (1 << 23)
    return k.astype(np.float32) * np.float32(2.0 ** -22) + np.float32(1.0)


def param_values(n, seed, base):
    k = (mix(seed, n) >> M64(41)).astype(np.float32)
    return k * np.float32(2.0 ** -23) + np.float32(base)


def sample_stride(total):
    return (total // 65536) | 1


class Case:
    """Inputs of one shape as PyTorch sees them: logical (N, C, ...) views of
    memory laid out as the shapes file says."""

    def __init__(self, index, layout, dims):
        self.layout, self.dims = layout, dims
        total = int(np.prod(dims))
        self.total = total
        c = layout.index("C")
        self.channels = dims[c]
        # Logical order N, C, the other axes in memory order; permute() gives
        # a view, so NHWC memory is a channels_last NCHW tensor.
        self.order = [0, c] + [i for i in range(1, len(dims)) if i != c]
        self.inverse = [self.order.index(i) for i in range(len(dims))]

        def view(values):
            return torch.from_numpy(values.reshape(dims)).permute(self.order)

        self.x = view(tensor_values(total, seed_of(index, SEED_X)))
        self.dy = view(tensor_values(total, seed_of(index, SEED_DY)))
        ch = self.channels
        self.gamma = torch.from_numpy(param_values(ch, seed_of(index, SEED_GAMMA), 0.5))
        self.beta = torch.from_numpy(param_values(ch, seed_of(index, SEED_BETA), -0.5))
        self.mean = torch.from_numpy(param_values(ch, seed_of(index, SEED_MEAN), 0.5))
        self.var = torch.from_numpy(param_values(ch, seed_of(index, SEED_VAR), 1.0))

    def memory_order(self, t):
        """The tensor's values in the memory order of the shapes file."""
        return t.permute(self.inverse).contiguous().reshape(-1).numpy()


def make_runs(case, eps, momentum):
    """One callable per pass, and what each returns for the comparison."""
    torch_momentum = 1.0 - momentum  # PyTorch's momentum weighs the new value
    run_mean, run_var = case.mean.clone(), case.var.clone()
    x, dy, w, b = case.x, case.dy, case.gamma, case.beta

    def train():
        return F.batch_norm(x, run_mean, run_var, w, b, True, torch_momentum, eps)

    def infer():
        return F.batch_norm(x, case.mean, case.var, w, b, False, 0.0, eps)

    _, save_mean, save_invstd = torch.native_batch_norm(
        x, w, b, case.mean.clone(), case.var.clone(), True, torch_momentum, eps)
    backward_op = torch.ops.aten.native_batch_norm_backward

    def bwd():
        return backward_op(dy, x, w, None, None, save_mean, save_invstd, True,
                           eps, [True, True, True])

    return {"train": train, "infer": infer, "bwd": bwd}


def rel_err(peer, ref):
    peer = peer.astype(np.float64)
    ref = ref.astype(np.float64)
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    diff = np.max(np.abs(peer - ref)) if ref.size else 0.0
    if np.isnan(diff) or np.isnan(peer).any():
        return float("nan")
    return float(diff / scale) if scale > 0 else float(diff)


def reference(workdir, index, what):
    path = os.path.join(workdir, "bnorm-s%d-%s.f32" % (index, what))
    return np.fromfile(path, dtype="<f4")


def scaled_err(peer, ref, scale):
    """max over channels of |peer - ref| / scale (see bench/compare.c)."""
    d = np.abs(peer.astype(np.float64) - ref.astype(np.float64))
    d = np.where(scale > 0, d / np.where(scale > 0, scale, 1.0), d)
    return float("nan") if np.isnan(d).any() else float(d.max(initial=0.0))


def check(case, index, pass_name, out, args):
    """The error as bench/compare.c measures it, and whether it is within
    the tolerances bnorm-bench passed."""
    stride = sample_stride(case.total)
    ref = lambda what: reference(args.workdir, index, what)
    if pass_name != "bwd":
        e = rel_err(case.memory_order(out)[::stride], ref(pass_name + "-y"))
        return e, e <= args.tol_y
    dx, dgamma, dbeta = out
    ex = rel_err(case.memory_order(dx)[::stride], ref("bwd-dx"))
    eg = scaled_err(dgamma.numpy(), ref("bwd-dgamma"), ref("bwd-dgamma-scale"))
    eb = scaled_err(dbeta.numpy(), ref("bwd-dbeta"), ref("bwd-dbeta-scale"))
    ok = ex <= args.tol_dx and eg <= args.tol_param and eb <= args.tol_param
    errs = [ex, eg, eb]
    worst = float("nan") if any(np.isnan(errs)) else max(errs)
    return worst, ok


class Scrubber:
    def __init__(self, nbytes):
        self.buf = torch.ones(max(nbytes // 4, 1), dtype=torch.float32)
        self.stride = 16  # one float per 64-byte line, as bench_scrub()

    def __call__(self):
        self.buf[:: self.stride].sum().item()


class Server:
    """Serves bnorm-bench's requests, one case at a time, so that PyTorch is
    timed in the same rounds as bnorm and oneDNN."""

    def __init__(self, args):
        self.args = args
        self.shapes = read_shapes(args.shapes)
        self.scrub = Scrubber(args.scrub_bytes)
        self.index, self.case, self.runs = None, None, None
        self.fn, self.cold, self.calls = None, False, 1

    def case_command(self, index, pass_name, threads, min_rep_s):
        """Builds the shape's inputs (when the shape changes), checks
        PyTorch's output of the pass against bnorm's samples and finds the
        calls per repetition. Reply: "STATUS ERR CALLS"."""
        if not 0 <= index < len(self.shapes) or pass_name not in PASSES:
            return "error nan 0"
        layout, dims, cold = self.shapes[index]
        if index != self.index:
            self.case = self.runs = None  # free the last shape's tensors
            self.case = Case(index, layout, dims)
            self.runs = make_runs(self.case, self.args.epsilon,
                                  self.args.momentum)
            self.index = index
        torch.set_num_threads(threads)
        self.fn, self.cold, self.calls = None, cold, 1
        fn = self.runs[pass_name]
        name = "%s %s %s" % (layout, "x".join(map(str, dims)), pass_name)
        try:
            err, ok = check(self.case, index, pass_name, fn(), self.args)
        except Exception as e:  # report, keep serving
            print("torch_bench: %s: %s" % (name, e), file=sys.stderr)
            return "error nan 0"
        if not ok:
            print("torch_bench: %s: PyTorch differs from bnorm (max rel err "
                  "%.3g)" % (name, err), file=sys.stderr)
            return "mismatch %.6g 0" % err
        if not cold:
            # As bnorm-bench sets its own runners' calls (timing.c): from
            # min_rep_s of warm calls, after min_rep_s of warm-up, not from
            # one call, which may wait for the threads to wake.
            for _ in range(2):
                done, t0 = 0, time.perf_counter()
                elapsed = 0.0
                while elapsed < min_rep_s and done < 100000:
                    fn()
                    done += 1
                    elapsed = time.perf_counter() - t0
                once = elapsed / done
            if 0 < once < min_rep_s:
                self.calls = min(100000, int(-(-min_rep_s // once)))
        self.fn = fn
        return "ok %.6g %d" % (err, self.calls)

    def time_command(self, warmup, count):
        """warmup untimed repetitions, then count timed ones, as
        bench_time_runners() times a block. Reply: "ok" and the seconds per
        call of each timed repetition."""
        if self.fn is None:
            return "error"
        fn, calls, samples = self.fn, self.calls, []
        for rep in range(warmup + count):
            if self.cold:
                self.scrub()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            t = (time.perf_counter() - t0) / calls
            if rep >= warmup:
                samples.append("%.9e" % t)
        return "ok " + " ".join(samples)

    def serve(self, commands, replies):
        replies.write("hello %s (%s)\n" % (torch.__version__, sys.executable))
        replies.flush()
        for line in commands:
            word = line.split()
            try:
                if word[:1] == ["case"] and len(word) == 5:
                    reply = self.case_command(int(word[1]), word[2],
                                              int(word[3]), float(word[4]))
                elif word[:1] == ["time"] and len(word) == 3:
                    reply = self.time_command(int(word[1]), int(word[2]))
                else:
                    raise ValueError("unknown command")
            except ValueError as e:
                print("torch_bench: %r: %s" % (line, e), file=sys.stderr)
                reply = "error"
            replies.write(reply + "\n")
            replies.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--command-fd", type=int, required=True)
    p.add_argument("--reply-fd", type=int, required=True)
    p.add_argument("--scrub-bytes", type=int, default=96 << 20)
    p.add_argument("--epsilon", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.99)
    p.add_argument("--tol-y", type=float, default=1e-4)
    p.add_argument("--tol-dx", type=float, default=1e-3)
    p.add_argument("--tol-param", type=float, default=1e-4)
    p.add_argument("--pages", choices=("system", "huge"), default="system")
    args = p.parse_args()
    set_pages(args.pages)
    torch.set_grad_enabled(False)
    server = Server(args)
    with os.fdopen(args.command_fd, "r") as commands, \
            os.fdopen(args.reply_fd, "w") as replies:
        server.serve(commands, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
