"""Benchmark: image->surface transform, compiled op vs pure-torch twin, forward + backward.

Default workload (issue 2): N=8, C=128, feature map 32×40, texture 256², a smooth UV field covering
most of the texture (quads of ~5 texels, like a rasterised template). Prints median times over
repeats, the speed ratio and the peak memory of each variant (each measured in a fresh subprocess,
as the growth of peak RSS (VmHWM) over the inputs; CUDA: max_memory_allocated).

    python -m tests.benchmarks.bm_image_to_surface [--device cpu|cuda] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from ntdm_cli.ops import image_to_surface, image_to_surface_torch
from tests.helpers import smooth_uv_inputs


def make_inputs(N, C, H, W, device, dtype=torch.float32):
    features, uv, mask = smooth_uv_inputs(N, C, H, W, dtype=dtype, coverage=0.8, noise=0.2, keep=0.97, seed=0)
    return features.to(device), uv.to(device), mask.to(device)


def step(variant, features, uv, mask, Q):
    f = features.detach().requires_grad_(True)
    u = uv.detach().requires_grad_(True)
    if variant == "op":
        surface, _, _ = image_to_surface(f, u, mask, Q, backend="native")
    else:
        surface, _, _ = image_to_surface_torch(f, u, mask, Q)
    surface.sum().backward()
    return f.grad, u.grad


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_variant(variant, inputs, Q, repeats, device):
    step(variant, *inputs, Q)  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        step(variant, *inputs, Q)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_memory_child(variant, args) -> float:
    """Run one forward+backward in a fresh interpreter; return its peak extra memory in MiB."""
    cmd = [sys.executable, "-m", "tests.benchmarks.bm_image_to_surface", "--child", variant,
           "--N", str(args.N), "--C", str(args.C), "--H", str(args.H), "--W", str(args.W), "--Q", str(args.Q),
           "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return float(out)


def child(variant, args):
    device = torch.device(args.device)
    inputs = make_inputs(args.N, args.C, args.H, args.W, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(variant, *inputs, args.Q)
        torch.cuda.synchronize()
        print((torch.cuda.max_memory_allocated() - base) / 2**20)
        return
    base = vm_hwm_kib()
    step(variant, *inputs, args.Q)
    print((vm_hwm_kib() - base) / 1024)


def vm_hwm_kib() -> int:
    """Peak resident set of this process (VmHWM: reset at exec, unlike ru_maxrss which a child
    inherits from its parent)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, default=8)
    p.add_argument("--C", type=int, default=128)
    p.add_argument("--H", type=int, default=32)
    p.add_argument("--W", type=int, default=40)
    p.add_argument("--Q", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args)
        return
    device = torch.device(args.device)
    inputs = make_inputs(args.N, args.C, args.H, args.W, device)
    with torch.no_grad():
        _, weight, visible = image_to_surface(*inputs, args.Q, backend="native")
    print(f"workload: N={args.N} C={args.C} map {args.H}x{args.W} texture {args.Q}^2 on {device}, "
          f"{torch.get_num_threads()} threads; visible texels/image {visible.sum().item() / args.N:.0f}")
    results = {}
    for variant in ("op", "twin"):
        t = time_variant(variant, inputs, args.Q, args.repeats, device)
        mem = peak_memory_child(variant, args)
        results[variant] = {"median_s": t, "peak_mib": mem}
        print(f"  {variant:5s} forward+backward median {t * 1000:9.1f} ms   peak extra memory {mem:8.1f} MiB")
    ratio = results["twin"]["median_s"] / results["op"]["median_s"]
    mem_ratio = results["op"]["peak_mib"] / max(results["twin"]["peak_mib"], 1e-9)
    print(f"  speed-up op vs twin: {ratio:.1f}x   memory op/twin: {mem_ratio:.2f}")
    results["speedup"] = ratio
    results["memory_ratio"] = mem_ratio
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
