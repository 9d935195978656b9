"""Benchmark: the pretrained effnet-lite backbones against the from-scratch ``small`` one, in one process.

Per batch of ``--batch`` crops of ``--crop``² pixels (the demo's: 8 × 128²):

* inference forward (what ``ntdm infer`` runs once per image batch);
* one training forward + backward of the backbone as trained: ``small`` end to end; effnet-lite0 with
  its frozen body, once through the body (no cache) and from cached body maps (what training does
  after the first pass: ``train.frozen_blocks=-1``);
* the memory per cached image.

Ratios are against ``small`` measured in the same process, interleaved (median of ``--repeats``).
``--fold`` compares effnet-lite0's fixed body pass with BatchNorm folded into the convolutions
(channels-last: what training's cache and inference run) against the plain pass (BatchNorm modules,
default layout), at the crop and batch given (the demo's crops: ``--crop 352x416``).
``--variants`` adds rows for other effnet backbones (effnet-lite1, effnet-lite2):
their body pass (``prefix``, what training caches once per image), their head step from the cache and
their cache size, with ratios against effnet-lite0 measured in the same process.

    python -m tests.benchmarks.bm_backbone [--crop 128] [--batch 8] [--repeats 7] [--threads N]
        [--variants effnet-lite1,effnet-lite2] [--fold]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ntdm_cli.model.backbone import make_backbone


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crop", default="128", help="side, or HxW")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--fold", action="store_true", help="only the folded against the plain body pass")
    p.add_argument("--variants", default="", help="comma list of other effnet backbones to compare with effnet-lite0")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    h, _, w = args.crop.partition("x")
    hw = (int(h), int(w or h))
    x = torch.rand(args.batch, 3, *hw, generator=torch.Generator().manual_seed(0)).to(dev)
    if args.fold:
        _fold(x, args, dev)
        return
    small = make_backbone("small", args.dim).to(dev)
    eff = make_backbone("effnet-lite0", args.dim).to(dev)
    eff.load_pretrained()
    eff.freeze_body()
    with torch.no_grad():
        cached = eff.body(x)

    def infer(b):
        def run():
            with torch.no_grad():
                b.eval()(x)
        return run

    rows = {"small": {}, "effnet-lite0": {}}
    for _ in range(2):  # interleave the two networks
        rows["small"]["infer"] = _time(infer(small), args.repeats)
        rows["effnet-lite0"]["infer"] = _time(infer(eff), args.repeats)
        rows["small"]["train"] = _time(_train_step(small, x), args.repeats)
        rows["effnet-lite0"]["train"] = _time(_train_step(eff, x), args.repeats)
        rows["effnet-lite0"]["train_cached"] = _time(_train_step(eff, cached), args.repeats)
    base = rows["small"]
    per_image = sum(t[0].numel() * t.element_size() for t in cached) / 1024
    print(f"backbone benchmark: batch {args.batch} × {hw[0]}×{hw[1]}, d={args.dim}, {torch.get_num_threads()} threads, {dev}")
    print(f"{'network':<28}{'infer fwd (s)':>14}{'vs small':>10}{'train fwd+bwd (s)':>19}{'vs small':>10}")
    print(f"{'small (from scratch)':<28}{base['infer']:>14.4f}{1.0:>10.2f}{base['train']:>19.4f}{1.0:>10.2f}")
    e = rows["effnet-lite0"]
    print(f"{'effnet-lite0, body frozen':<28}{e['infer']:>14.4f}{e['infer'] / base['infer']:>10.2f}"
          f"{e['train']:>19.4f}{e['train'] / base['train']:>10.2f}")
    print(f"{'effnet-lite0, cached body':<28}{'':>14}{'':>10}{e['train_cached']:>19.4f}"
          f"{e['train_cached'] / base['train']:>10.2f}")
    print(f"cached body maps: {per_image:.1f} kB per image")
    names = [v for v in args.variants.split(",") if v]
    if names:
        _variants(["effnet-lite0", *names], x, args, dev)


def _train_step(b, inp):
    """One training forward + backward of backbone ``b`` on ``inp`` (images or its cached body maps)."""
    def run():
        b.train()
        b.zero_grad(set_to_none=True)
        b(inp).sum().backward()
    return run


def _fold(x: torch.Tensor, args, dev: torch.device) -> None:
    """effnet-lite0's fixed body pass, folded (the default) against plain, interleaved."""
    b = make_backbone("effnet-lite0", args.dim).to(dev)
    b.load_pretrained()
    b.freeze_body()
    b.eval()

    def body(fold: bool):
        def run():
            b.fold_batchnorm = fold
            with torch.no_grad():
                b.prefix(x)
        return run

    rows = {}
    for _ in range(2):
        rows["plain"] = _time(body(False), args.repeats)
        rows["folded"] = _time(body(True), args.repeats)
    print(f"effnet-lite0 fixed body pass: batch {args.batch} × {x.shape[-2]}×{x.shape[-1]}, "
          f"{torch.get_num_threads()} threads, {dev}")
    print(f"{'pass':<34}{'seconds':>10}{'speed-up':>10}{'images/s':>10}")
    for name, label in (("plain", "plain (BatchNorm modules)"), ("folded", "folded, channels-last")):
        print(f"{label:<34}{rows[name]:>10.4f}{rows['plain'] / rows[name]:>10.2f}{args.batch / rows[name]:>10.1f}")


def _variants(names: list[str], x: torch.Tensor, args, dev: torch.device) -> None:
    """Body pass, cached head step and cache size of each effnet backbone, against the first."""
    nets, caches = {}, {}
    for name in names:
        b = make_backbone(name, args.dim).to(dev)
        b.load_pretrained()
        b.freeze_body()
        nets[name] = b
        with torch.no_grad():
            caches[name] = b.prefix(x)

    def body(b):
        def run():
            with torch.no_grad():
                b.eval().prefix(x)
        return run

    rows = {n: {} for n in names}
    for _ in range(2):  # interleaved
        for n in names:
            rows[n]["body"] = _time(body(nets[n]), args.repeats)
            rows[n]["step"] = _time(_train_step(nets[n], caches[n]), args.repeats)
    base = rows[names[0]]
    print(f"{'backbone':<22}{'body pass (s)':>14}{'vs lite0':>10}{'cached step (s)':>17}{'vs lite0':>10}{'cache kB/img':>14}")
    for n in names:
        r = rows[n]
        kb = sum(t[0].numel() * t.element_size() for t in caches[n]) / 1024
        print(f"{n:<22}{r['body']:>14.4f}{r['body'] / base['body']:>10.2f}{r['step']:>17.4f}"
              f"{r['step'] / base['step']:>10.2f}{kb:>14.1f}")


if __name__ == "__main__":
    main()
