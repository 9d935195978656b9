"""Benchmark: rendering neural-texture features for render-and-compare (model.surface), covered-pixel
formulation vs the full-map one it replaced (tests/test_surface.reference_surface), same process.

Two workloads of ``ntdm infer``, with the demo's model sizes (642-vertex template, 7×64²×64 textures):

* ``grid``: one chunk of the initial pose grid, 64 hypotheses on a 16×16 map (128² crop, stride 8),
  forward only (no grad), as ``_score`` renders it;
* ``step``: one Adam step of 8 images × 1 hypothesis, forward + backward to the vertices.

Objects cover about a quarter of the map, as the demo's crops do. Reports median times and the ratio.

    python -m tests.benchmarks.bm_render_features [--device cpu] [--repeats 10] [--size 16] [--dim 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ntdm_cli.geometry.template import make_template
from ntdm_cli.model.surface import rasterize_surface, render_features
from ntdm_cli.render import Viewpoint
from tests.test_surface import reference_surface


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--texture", type=int, default=64)
    args = ap.parse_args()
    dev = torch.device(args.device)
    t = make_template(3).to(dev)
    g = torch.Generator().manual_seed(0)
    theta = F.normalize(torch.randn(7, args.texture, args.texture, args.dim, generator=g), dim=-1).to(dev)
    size = (args.size, args.size)

    def make_vp(n: int) -> Viewpoint:
        # viewport chosen so that the unit-sphere template covers about a quarter of the map
        return Viewpoint.create(azimuth=torch.rand(n, generator=g) * 6.28, elevation=torch.rand(n, generator=g) * 0.6,
                                theta=torch.rand(n, generator=g) * 0.4 - 0.2, distance=torch.full((n,), 5.0),
                                px=torch.full((n,), args.size * 4.0), py=torch.full((n,), args.size * 4.0),
                                viewport=5.0 * args.size * 8 * 0.28, device=dev)

    def new(verts, vp):
        s = rasterize_surface(verts, t.faces, t.verts_uvs, t.faces_uvs, vp, size, 8.0, 7, 5.0)
        return render_features(s, t.verts_uvs, t.faces_uvs, theta), s.mask

    def ref(verts, vp):
        _, mask, _, feat = reference_surface(verts, t, vp, size, 8.0, 7, 5.0, theta)
        return feat, mask

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    print(f"render features, template {t.verts.shape[0]} vertices, texture 7×{args.texture}²×{args.dim}, "
          f"map {args.size}², {args.device}, {torch.get_num_threads()} threads")
    for work, n, grad in (("grid", 64, False), ("step", 8, True)):
        vps = [make_vp(n) for _ in range(args.repeats + 1)]
        times = {"full-map (before)": [], "covered pixels": []}
        cover = 0.0
        for r, vp in enumerate(vps):  # interleaved; round 0 warms up
            for name, fn in (("full-map (before)", ref), ("covered pixels", new)):
                verts = t.verts.unsqueeze(0).expand(n, -1, -1).contiguous().requires_grad_(grad)
                sync()
                t0 = time.perf_counter()
                with torch.set_grad_enabled(grad):
                    feat, mask = fn(verts, vp)
                    if grad:
                        feat.sum().backward()
                sync()
                if r > 0:
                    times[name].append(time.perf_counter() - t0)
                cover = float(mask.float().mean())
        base = statistics.median(times["full-map (before)"])
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {work:4s} ({n:2d} hyp{', fwd+bwd' if grad else ', fwd'}) {name:18s} {med * 1000:8.2f} ms "
                  f"{base / med:5.2f}×  (object covers {cover * 100:.0f} % of the map)")


if __name__ == "__main__":
    main()
