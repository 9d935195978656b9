"""Benchmark: workload W of the rendering-core issue, native rasterizer vs the torch reference.

W: N=144 hypotheses (a 12 azimuth × 4 elevation × 3 theta pose grid) of an icosphere with 5120 faces
covering about a quarter of a 64×80 image, K=1, forward + backward through bary_coords and zbuf.
Prints the median time of each variant, their ratio and the peak memory of each (a fresh
subprocess each, growth of peak RSS (VmHWM); CUDA: max_memory_allocated).

The torch reference tests every face at every pixel (3.8e9 tests for W); it runs image by image, so
its time is linear in N: by default it is timed on the first ``--ref-batch`` hypotheses and scaled
to N (``--ref-batch 144`` times the whole of W; expect minutes on 2 cores).

    python -m tests.benchmarks.bm_raster [--device cpu|cuda] [--repeats 5] [--ref-batch 16] [--threads T]
                                         [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from ntdm_cli.render import rasterize
from ntdm_cli.bench.raster import sphere_screen_verts


def make_inputs(N, subdivisions, H, W, device):
    screen, faces = sphere_screen_verts(N, subdivisions, (H, W), coverage=0.25)
    return screen.to(device), faces.to(device)


def step(backend, screen, faces, H, W, K=1):
    v = screen.detach().requires_grad_(True)
    fr = rasterize(v, faces, (H, W), faces_per_pixel=K, backend=backend)
    (fr.bary_coords.sum() + fr.zbuf.sum()).backward()
    return fr, v.grad


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_variant(backend, screen, faces, H, W, repeats, device):
    sync(device)
    t0 = time.perf_counter()
    step(backend, screen, faces, H, W)  # warm-up
    sync(device)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeats if warm < 5 else 1):
        sync(device)
        t0 = time.perf_counter()
        step(backend, screen, faces, H, W)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def peak_memory_child(backend, N, args) -> float:
    cmd = [sys.executable, "-m", "tests.benchmarks.bm_raster", "--child", backend, "--N", str(N), "--H", str(args.H),
           "--W", str(args.W), "--subdivisions", str(args.subdivisions), "--device", args.device,
           "--threads", str(torch.get_num_threads())]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return float(out)


def child(backend, args):
    device = torch.device(args.device)
    screen, faces = make_inputs(args.N, args.subdivisions, args.H, args.W, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(backend, screen, faces, args.H, args.W)
        torch.cuda.synchronize()
        print((torch.cuda.max_memory_allocated() - base) / 2**20)
        return
    base = vm_hwm_kib()
    step(backend, screen, faces, args.H, args.W)
    print((vm_hwm_kib() - base) / 1024)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, default=144)
    p.add_argument("--subdivisions", type=int, default=4)
    p.add_argument("--H", type=int, default=64)
    p.add_argument("--W", type=int, default=80)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ref-batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args)
        return
    device = torch.device(args.device)
    screen, faces = make_inputs(args.N, args.subdivisions, args.H, args.W, device)
    with torch.no_grad():
        cover = rasterize(screen, faces, (args.H, args.W)).mask.float().mean().item()
    print(f"workload W: N={args.N}, {faces.shape[0]} faces, image {args.H}x{args.W}, K=1, covered {cover:.3f}, "
          f"fwd+bwd through bary+zbuf on {device}, {torch.get_num_threads()} threads")
    results = {"N": args.N, "faces": faces.shape[0], "H": args.H, "W": args.W, "covered": cover,
               "threads": torch.get_num_threads(), "device": str(device)}
    t_nat = time_variant("native", screen, faces, args.H, args.W, args.repeats, device)
    m_nat = peak_memory_child("native", args.N, args)
    print(f"  native  median {t_nat * 1000:9.1f} ms   ({t_nat / args.N * 1000:.2f} ms/image)   peak extra memory "
          f"{m_nat:8.1f} MiB")
    nb = min(args.ref_batch, args.N)
    t_ref_part = time_variant("torch", screen[:nb], faces, args.H, args.W, max(1, min(args.repeats, 2)), device)
    t_ref = t_ref_part * args.N / nb
    m_ref = peak_memory_child("torch", nb, args)
    how = "measured" if nb == args.N else f"measured on {nb} images, scaled x{args.N / nb:.0f}"
    print(f"  torch   median {t_ref * 1000:9.1f} ms   ({how}; {t_ref_part * 1000:.1f} ms)   peak extra memory "
          f"{m_ref:8.1f} MiB (N={nb})")
    ratio = t_ref / t_nat
    print(f"  speed-up native vs torch reference: {ratio:.0f}x   (targets: native <= 0.5 s, >= 20x, < 1 GiB)")
    results.update(native_s=t_nat, native_peak_mib=m_nat, torch_s=t_ref, torch_measured_batch=nb,
                   torch_measured_s=t_ref_part, torch_peak_mib=m_ref, speedup=ratio)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
