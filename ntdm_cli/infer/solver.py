"""Render-and-compare (NTDM sec. 3.4, eq. 10) for one image and one category.

Hypotheses (azimuth, elevation, theta, distance, latent z, scale s′) are scored in batches; ``topk``
low-loss starts of the initial grid, viewing the object from directions ``separation_deg`` apart
(:func:`separated_topk`), are then optimised together with Adam. A pixel inside the rendered
silhouette is foreground when its feature matches the rendered feature better than the best background
feature; the loss is 1 − mean over pixels of (f·f′ on foreground, max_β f·β elsewhere), plus the
category's viewpoint prior (model.pose_prior) when the model has one.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ntdm_cli.config import section
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.conventions import DEFAULT_HOLE_GAP
from ntdm_cli.geometry.holes import solid_faces
from ntdm_cli.model.backbone import STRIDE
from ntdm_cli.model.pose_prior import PosePrior
from ntdm_cli.model.surface import rasterize_surface, render_covered
from ntdm_cli.model.view_classifier import ViewClassifier
from ntdm_cli.render import Viewpoint


@section("infer")
@dataclass
class InferConfig:
    steps: int = 300
    lr: float = 0.05
    lr_final_factor: float = 0.1  # exponential decay to lr·factor at the last step
    azimuths: int = 12
    elevations: int = 4
    elevation_range: list = field(default_factory=lambda: [-math.pi / 6, math.pi / 3])
    thetas: int = 3
    theta_range: list = field(default_factory=lambda: [-math.pi / 6, math.pi / 6])
    init_distance: float = 0.0  # 0: the model's training distance (the crops put objects there; NeMo: 5)
    topk: int = 1
    separation_deg: float = 60.0  # the topk starts view the object from directions at least this far apart (0: plain top-k)
    bank_clusters: int = 0  # 0: background score = max over the whole bank; K: over K spherical k-means centres
    init_poses: int = 0  # 0: score every pose × latent; N: poses with the mean shape, then the best N × latents
    shortlist: int = 0  # 0 = optimise every category; else the fast classifier's top K
    calibrated: bool = True  # class = argmax of the model's per-category gain × evidence (when it has gains)
    init: str = "grid"  # grid | random | average (latent initialisation; poses always from the grid)
    fix_shape: bool = False
    scale_bound: float = 0.15  # the optimised per-axis scale s′ stays within exp(±bound)
    latent_simplex: bool = True  # keep the latent a convex combination of the CADs' (projected after each step)
    no_background: bool = False
    single_bin: bool = False
    early_stop_tol: float = 1e-4
    early_stop_patience: int = 30
    score_chunk: int = 64  # hypotheses rendered at once when scoring the grid (64: fastest on CPU)
    pool: int = 0  # render and compare on features average-pooled this many times; 0: the model's train.zoom
    grid_pool: int = 1  # score the initial grid on features pooled this many times more (2: a stride-4 model at stride 8)
    polish_levels: int = 0  # compass search after Adam: step halvings (0: off); moves the silhouette, which Adam cannot
    polish_step_deg: float = 15.0  # its first angle step (degrees); distance steps by the same fraction / 2
    polish_iterations: int = 3  # moves tried per step size while one of them improves some hypothesis
    batch_images: int = 8  # images solved together (features, grid scoring and Adam in one batch)
    model: str = ""  # model artifact when --model and NTDM_MODEL are not given (ntdm_cli.model.default)
    pose_prior: float = 1.0  # weight of the model's viewpoint prior in the loss (1: the posterior; 0: evidence only)
    pose_prior_outliers: float = 0.1  # the prior's uniform share: bounds what an unusual pose costs
    view_prior: float = 10.0  # weight of the model's view classifier, p(azimuth | image), in the loss, for models
    #   trained with one (train.view_epochs); 0: off
    final_steps: int = 0  # > 0 (with pool > 1): the answer is refined once more on the unpooled feature map,
    #   this many Adam steps and the compass search at the finest polish step and its half (coarse to fine)
    hole_gap: float = DEFAULT_HOLE_GAP  # faces of the deformed mesh farther than this fraction of the CAD's
    #   diagonal from its surface (geometry.holes) are holes: left out of the amodal mask and the exported
    #   meshes (a chair's legs without the membrane between them); 0: every face
    distance_calibrated: bool = True  # the answer's camera distance multiplied by the model's distance factor
    #   (calibration.fit_distance_factor: the solver's distances come out short, its silhouettes too large;
    #   1 for models without one); False: the solver's own distance
    view_refine: bool = False  # the view term also in Adam and the compass search; False: it only picks the
    #   starts and the answer among the refined starts, the evidence alone sets the fine pose and the class

    def validate(self) -> None:
        if self.init not in ("grid", "random", "average"):
            raise NtdmUsageError(f"infer.init must be grid, random or average, got {self.init!r}")
        if self.init_poses < 0:
            raise NtdmUsageError("infer.init_poses must be ≥ 0")
        if self.final_steps < 0:
            raise NtdmUsageError("infer.final_steps must be ≥ 0")
        for name in ("azimuths", "elevations", "thetas", "topk", "score_chunk", "batch_images", "grid_pool",
                     "polish_iterations"):
            if getattr(self, name) <= 0:
                raise NtdmUsageError(f"infer.{name} must be positive")
        if self.steps < 0:
            raise NtdmUsageError("infer.steps must be ≥ 0")
        if self.polish_levels < 0:
            raise NtdmUsageError("infer.polish_levels must be ≥ 0")
        if self.pool < 0:
            raise NtdmUsageError("infer.pool must be ≥ 0 (0: the model's zoom)")
        if not (self.scale_bound >= 0 and math.isfinite(self.scale_bound)):
            raise NtdmUsageError(f"infer.scale_bound must be ≥ 0, got {self.scale_bound!r}")
        if not (self.separation_deg >= 0 and self.separation_deg < 180):
            raise NtdmUsageError(f"infer.separation_deg must be in [0, 180), got {self.separation_deg!r}")
        if not (self.pose_prior >= 0 and math.isfinite(self.pose_prior)):
            raise NtdmUsageError(f"infer.pose_prior must be ≥ 0, got {self.pose_prior!r}")
        if not 0 < self.pose_prior_outliers < 1:
            raise NtdmUsageError(f"infer.pose_prior_outliers must be in (0, 1), got {self.pose_prior_outliers!r}")
        if not (self.hole_gap >= 0 and math.isfinite(self.hole_gap)):
            raise NtdmUsageError(f"infer.hole_gap must be ≥ 0, got {self.hole_gap!r}")
        if not (self.view_prior >= 0 and math.isfinite(self.view_prior)):
            raise NtdmUsageError(f"infer.view_prior must be ≥ 0, got {self.view_prior!r}")
        for name in ("lr", "lr_final_factor", "polish_step_deg"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise NtdmUsageError(f"infer.{name} must be a positive number, got {value!r}")


@dataclass
class Hypotheses:
    """Batched pose + shape hypotheses, each field (N,) or (N, K) / (N, 3); ``image`` (N,) int64 says
    which image of the batch each hypothesis explains (None: all image 0)."""

    azimuth: torch.Tensor
    elevation: torch.Tensor
    theta: torch.Tensor
    distance: torch.Tensor
    latent: torch.Tensor
    log_scale: torch.Tensor
    image: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.azimuth.shape[0]

    def select(self, idx: torch.Tensor) -> "Hypotheses":
        return Hypotheses(*(t[idx] for t in self.fields()), image=None if self.image is None else self.image[idx])

    def fields(self) -> tuple[torch.Tensor, ...]:
        """The optimisable tensors."""
        return (self.azimuth, self.elevation, self.theta, self.distance, self.latent, self.log_scale)

    def detached(self) -> "Hypotheses":
        return Hypotheses(*(t.detach().clone() for t in self.fields()), image=self.image)

    def image_index(self) -> torch.Tensor:
        if self.image is None:
            return torch.zeros(len(self), dtype=torch.long, device=self.azimuth.device)
        return self.image


def pose_grid(cfg: InferConfig, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The initial pose grid: azimuths × elevations × thetas (144 by default), each (P,)."""
    az = torch.arange(cfg.azimuths, device=device, dtype=torch.float32) * (2 * math.pi / cfg.azimuths)
    el = torch.linspace(cfg.elevation_range[0], cfg.elevation_range[1], cfg.elevations, device=device)
    th = torch.linspace(cfg.theta_range[0], cfg.theta_range[1], cfg.thetas, device=device) if cfg.thetas > 1 \
        else torch.zeros(1, device=device)
    A, E, T = torch.meshgrid(az, el, th, indexing="ij")
    return A.reshape(-1), E.reshape(-1), T.reshape(-1)


def initial_latents(deformer, cfg: InferConfig, generator: torch.Generator) -> torch.Tensor:
    """(L, K) latents to try: the CAD one-hots and their mean (grid), the mean alone (average) or one
    random vector (random)."""
    K = deformer.num_latents
    onehots = deformer.latents.float()
    mean = deformer.mean_latent().reshape(1, K).float().to(onehots.device)
    if cfg.init == "average" or cfg.fix_shape:
        return mean
    if cfg.init == "random":
        z = torch.rand(1, K, generator=generator).to(onehots.device)
        return z / z.sum()
    return torch.cat([onehots, mean])


def background_scores(features: torch.Tensor, bank: torch.Tensor, no_background: bool = False) -> torch.Tensor:
    """max_β f·β (B, h, w) of unit features (B, d, h, w) against the clutter model ``bank`` (M, d);
    zeros for the ablation without a background model."""
    if no_background:
        return features.new_zeros(features.shape[0], *features.shape[-2:])
    return (features.permute(0, 2, 3, 1) @ bank.T).amax(-1)


def pooled_features(features: torch.Tensor, factor: int) -> torch.Tensor:
    """Unit features (B, d, h, w) average-pooled ``factor``× and renormalised: (B, d, ⌈h/factor⌉, ⌈w/factor⌉)
    (a partial last cell is kept)."""
    if factor <= 1:
        return features
    return F.normalize(F.avg_pool2d(features, factor, ceil_mode=True), dim=1)


def view_angle(az1: torch.Tensor, el1: torch.Tensor, az2: torch.Tensor, el2: torch.Tensor) -> torch.Tensor:
    """Angle (radians) between the directions from which two poses view the object (azimuth,
    elevation in radians, broadcast): the great-circle distance of the camera centres on the unit sphere."""
    c = torch.sin(el1) * torch.sin(el2) + torch.cos(el1) * torch.cos(el2) * torch.cos(az1 - az2)
    return torch.arccos(c.clamp(-1.0, 1.0))


def separated_topk(losses: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor, k: int,
                   separation: float, diverse: int | None = None) -> torch.Tensor:
    """Indices (B, k) of k low-loss hypotheses per image, greedily: the lowest loss, then the lowest
    of those viewing the object from at least ``separation`` radians away (:func:`view_angle`) from
    every one picked, and so on for the first ``diverse`` picks (default all k); when none is left that
    far away, and for the picks after ``diverse``, the lowest not yet picked.

    losses, azimuth, elevation: (B, G). With ``separation`` 0 this is plain top-k (lowest first).
    Diverse starts let Adam refine distinct basins (a front/back flip, a side view) instead of k
    neighbours of one grid optimum."""
    B, G = losses.shape
    k = min(k, G)
    if separation <= 0 or k <= 1:
        return torch.topk(-losses, k, dim=1).indices
    rows = torch.arange(B, device=losses.device)
    free = losses.clone()  # inf: picked or too close to a pick
    left = losses.clone()  # inf: picked
    diverse = k if diverse is None else diverse
    picks = []
    for j in range(k):
        far = torch.isfinite(free.amin(1)) & (j < diverse)
        idx = torch.where(far, free.argmin(1), left.argmin(1))  # (B,)
        picks.append(idx)
        left[rows, idx] = float("inf")
        near = view_angle(azimuth, elevation, azimuth[rows, idx][:, None], elevation[rows, idx][:, None]) < separation
        free = free.masked_fill(near, float("inf"))
        free[rows, idx] = float("inf")
    return torch.stack(picks, 1)


def bank_centres(bank: torch.Tensor, k: int, iterations: int = 20, seed: int = 0) -> torch.Tensor:
    """Spherical k-means of the background bank: (M, d) unit features -> (min(k, M), d) unit centres.

    A compact clutter model (NeMo's): the maximum over a few centres is a lower bar than the maximum
    over thousands of stored features, so object pixels are not all explained as background."""
    M = bank.shape[0]
    if k <= 0 or k >= M:
        return bank
    g = torch.Generator().manual_seed(seed)
    centres = bank[torch.randperm(M, generator=g)[:k].to(bank.device)].clone()
    for _ in range(iterations):
        assign = (bank @ centres.T).argmax(1)
        summed = torch.zeros_like(centres).index_add_(0, assign, bank)
        empty = summed.norm(dim=1) < 1e-8
        summed[empty] = centres[empty]
        centres = F.normalize(summed, dim=1)
    return centres


class RenderCompare:
    """Scores hypotheses of one category against the features of a batch of images.

    features: (B, d, h, w) unit image features (hypothesis n explains image ``hyp.image[n]``);
    bank: (M, d) background features (the whole bank, or :func:`bank_centres` of it); principal:
    (px, py) crop pixels; stride: crop pixels per feature cell (the backbone's); prior: the category's
    viewpoint prior (model.pose_prior), weighed against the evidence of the h·w cells of ``features``
    (also when a pooled copy scores the grid), or None; view: the view classifier
    (model.view_classifier) and its log-probabilities (B, K) of the category's azimuth bins for each
    image, weighed the same way (``cfg.view_prior``), or None; hole_gap: hypotheses are rendered
    without the faces whose gap to the CADs their latent mixes exceeds it (geometry.holes; the model's
    train.hole_gap, 0: the closed mesh)."""

    def __init__(self, features: torch.Tensor, deformer, texture, bank: torch.Tensor, cfg: InferConfig,
                 bin_temperature: float, principal: tuple[float, float], stride: float = STRIDE,
                 bg: torch.Tensor | None = None, prior: PosePrior | None = None,
                 view: tuple[ViewClassifier, torch.Tensor] | None = None, hole_gap: float = 0.0):
        self.stride = float(stride)
        self.hole_gap = float(hole_gap)
        self.prior = prior if cfg.pose_prior > 0 else None
        self.view = view if cfg.view_prior > 0 else None
        if self.view is not None:  # each image's mode, once: every scored hypothesis is relative to it
            self.view_mode = self.view[0].mode_log_density(self.view[1])
        self.cells = features.shape[-2] * features.shape[-1]
        self.bank = bank
        self.deformer = deformer
        self.template = deformer.template
        self.theta = texture.theta if not cfg.single_bin else texture.theta.mean(0, keepdim=True)
        self.num_bins = self.theta.shape[0]
        self.cfg = cfg
        self.bin_temperature = bin_temperature
        self._set_features(features, bg)
        self.px, self.py = principal
        # With linear latent conditioning Γ(z) = s ⊙ (v + Σ_k z_k D_k) exactly: precompute the basis D
        # once instead of running the MLP for every hypothesis at every step.
        self.basis = None
        if getattr(deformer, "conditioning", "") == "linear":
            with torch.no_grad():
                eye = torch.eye(deformer.num_latents, device=features.device)
                self.basis = deformer.displacement(eye)  # (K, V, 3)
                self.base = deformer.template_verts  # (V, 3)
                self.shape_scale = deformer.scale  # (3,)

    def _set_features(self, features: torch.Tensor, bg: torch.Tensor | None = None) -> None:
        """The image features (B, d, h, w) and their background scores (B, h, w) (computed unless given)."""
        self.f = features
        self.h, self.w = features.shape[-2:]
        self.f_pix = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])  # (B·h·w, d), pixel-major
        self.bg = bg if bg is not None else background_scores(features, self.bank, self.cfg.no_background)
        self.bg_flat = self.bg.reshape(-1)  # (B·h·w,)
        self.bg_sum = self.bg.sum((1, 2))  # (B,) what a hypothesis covering nothing scores

    def pooled(self, factor: int) -> "RenderCompare":
        """The same scorer on the features average-pooled ``factor``× and renormalised, rendered at
        ``factor``× the stride: factor² fewer pixels per hypothesis (for scoring the initial grid).
        Shares the texture, the shape basis and the bank with ``self``."""
        if factor <= 1:
            return self
        if factor > min(self.h, self.w):
            raise NtdmUsageError(f"infer.grid_pool={factor} is larger than the {self.h}×{self.w} feature map")
        coarse = copy.copy(self)
        coarse.stride = self.stride * factor
        coarse._set_features(pooled_features(self.f, factor))
        return coarse

    def without_view(self) -> "RenderCompare":
        """The same scorer without the view classifier's term (evidence and viewpoint prior only);
        ``self`` when it has none. Shares everything else with ``self``."""
        if self.view is None:
            return self
        plain = copy.copy(self)
        plain.view = None
        return plain

    def view_term(self, hyp: Hypotheses) -> torch.Tensor:
        """The view classifier's part (N,) of the hypotheses' losses (zeros without one), in loss units."""
        if self.view is None:
            return hyp.azimuth.new_zeros(len(hyp))
        net, log_probs = self.view
        img = hyp.image_index()
        return net.loss(log_probs.index_select(0, img), hyp.azimuth, self.cells, self.cfg.view_prior,
                        self.view_mode.index_select(0, img))

    def verts(self, hyp: Hypotheses) -> torch.Tensor:
        """Vertices (N, V, 3) of the hypotheses: s′ ⊙ Γ(z)."""
        if self.basis is not None:
            disp = torch.einsum("nk,kvc->nvc", hyp.latent.to(self.basis.dtype), self.basis)
            v = self.shape_scale * (self.base + disp)
        else:
            v = self.deformer(hyp.latent)
        return v * hyp.log_scale.exp().unsqueeze(1)

    def viewpoint(self, hyp: Hypotheses) -> Viewpoint:
        n = len(hyp)
        dev = hyp.azimuth.device
        return Viewpoint.create(azimuth=hyp.azimuth, elevation=hyp.elevation, theta=hyp.theta,
                                distance=hyp.distance, px=torch.full((n,), self.px, device=dev),
                                py=torch.full((n,), self.py, device=dev))

    def losses(self, hyp: Hypotheses, return_maps: bool = False):
        """Loss (N,) of each hypothesis (eq. 10); with ``return_maps`` also the silhouette (N, h, w) and
        the foreground decision (N, h, w) at the feature resolution.

        A pixel scores max(f·rendered, background) on the object and its background score elsewhere,
        so the loss is 1 − (Σ_all bg + Σ_covered relu(f·rendered − bg)) / (h·w): only the M covered
        pixels are rendered and compared (the per-image background sums are precomputed). With a
        viewpoint prior the loss adds its negative log-density in these units (model.pose_prior), and
        with a view classifier the negative log-density of its azimuth (model.view_classifier)."""
        surf = rasterize_surface(self.verts(hyp), self.template.faces, self.template.verts_uvs,
                                 self.template.faces_uvs, self.viewpoint(hyp), (self.h, self.w), self.stride,
                                 self.num_bins, self.bin_temperature,
                                 solid=solid_faces(self.deformer.face_gaps, hyp.latent, self.hole_gap))
        rendered = render_covered(surf, self.theta)  # (d, M)
        img = hyp.image_index()
        hw = self.h * self.w
        owner = surf.idx // hw  # hypothesis of each covered pixel
        rows = img.index_select(0, owner) * hw + surf.idx % hw  # its pixel in the image features
        fg_score = (rendered.T * self.f_pix.index_select(0, rows)).sum(1)  # (M,)
        N = len(hyp)
        if self.cfg.no_background:
            gain = fg_score
            fg_pix = torch.ones_like(fg_score, dtype=torch.bool)
            base = fg_score.new_zeros(N)
        else:
            gain = torch.relu(fg_score - self.bg_flat.index_select(0, rows))
            fg_pix = gain > 0
            base = self.bg_sum.index_select(0, img)
        loss = 1 - (base + fg_score.new_zeros(N).index_add(0, owner, gain)) / hw
        if self.prior is not None:
            loss = loss + self.prior.loss(hyp.elevation, hyp.theta, self.cells, self.cfg.pose_prior,
                                          self.cfg.pose_prior_outliers)
        if self.view is not None:
            loss = loss + self.view_term(hyp)
        if return_maps:
            fg = torch.zeros(N * hw, dtype=torch.bool, device=fg_pix.device).index_copy(0, surf.idx, fg_pix)
            return loss, surf.mask, fg.view(N, self.h, self.w)
        return loss


@dataclass
class SolveResult:
    best: Hypotheses  # (1,)
    loss: float
    evidence: float  # the lowest loss without the view classifier's term among the refined starts (the
    #   category's evidence, for the class; = loss for a model without one)
    topk: Hypotheses  # (k,) after optimisation
    topk_losses: torch.Tensor  # (k,)
    init_loss: float  # best loss of the grid (its top-k starts, at full resolution)
    history: list[float]
    timing: dict[str, float]


def _grid(A: torch.Tensor, E: torch.Tensor, T: torch.Tensor, Z: torch.Tensor, B: int, distance: float) -> Hypotheses:
    """Every pose × latent (L, K) for each of B images, image-major, then latent, then pose.

    A, E, T: (P,) poses shared by all images, or (B, P) poses of each image."""
    A, E, T = (x.expand(B, -1) if x.dim() == 1 else x for x in (A, E, T))
    P, L = A.shape[1], Z.shape[0]
    G = P * L
    dev = A.device

    def per_image(x: torch.Tensor) -> torch.Tensor:  # (B, P) -> (B·L·P,)
        return x[:, None, :].expand(B, L, P).reshape(-1)

    return Hypotheses(per_image(A), per_image(E), per_image(T), torch.full((G * B,), distance, device=dev),
                      Z.repeat_interleave(P, 0).repeat(B, 1), torch.zeros(G * B, 3, device=dev),
                      torch.arange(B, device=dev).repeat_interleave(G))


def _keep_better(best: Hypotheses, best_loss: torch.Tensor, hyp: Hypotheses, loss: torch.Tensor) -> torch.Tensor:
    """Copy into ``best`` the hypotheses whose ``loss`` beats ``best_loss``; returns the updated losses."""
    better = loss < best_loss
    if better.any():
        for dst, src in zip(best.fields(), hyp.fields()):
            dst[better] = src.detach()[better]
    return torch.where(better, loss, best_loss)


@torch.no_grad()
def _score(rc: "RenderCompare", grid: Hypotheses, chunk: int) -> torch.Tensor:
    """Losses (n,) of n hypotheses, rendered ``chunk`` at a time."""
    n = len(grid)
    dev = grid.azimuth.device
    return torch.cat([rc.losses(grid.select(torch.arange(s, min(s + chunk, n), device=dev))) for s in range(0, n, chunk)])


def solve(rc: RenderCompare, cfg: InferConfig, generator: torch.Generator) -> SolveResult:
    """Grid search then Adam for one image (the first of ``rc``'s features) and one category."""
    return solve_batch(rc, cfg, generator, images=1)[0]


def solve_batch(rc: RenderCompare, cfg: InferConfig, generator: torch.Generator,
                images: int | None = None) -> list[SolveResult]:
    """Grid search then Adam for every image of ``rc`` together (one category): the grid of every
    image is scored in chunks, and the top-k starts of all images are optimised in one batch."""
    import time

    dev = rc.f.device
    if not cfg.init_distance > 0:
        raise ValueError("InferConfig.init_distance must be resolved to a positive distance before solve()")
    B = rc.f.shape[0] if images is None else images
    t0 = time.perf_counter()
    scorer = rc.pooled(cfg.grid_pool)
    A, E, T = pose_grid(cfg, dev)
    Z = initial_latents(rc.deformer, cfg, generator).to(dev)
    P, L = A.shape[0], Z.shape[0]
    sep = math.radians(cfg.separation_deg)
    if 0 < cfg.init_poses < P and L > 1:
        # coarse to fine: every grid pose with the mean shape, then the best init_poses of each image
        # with every latent (P + init_poses·L renders per image instead of P·L)
        mean = rc.deformer.mean_latent().reshape(1, -1).float().to(dev)
        coarse = _grid(A, E, T, mean, B, cfg.init_distance)
        first = _score(scorer, coarse, cfg.score_chunk).view(B, P)
        # the shortlist holds the topk separated starts first, then the best of the rest
        keep = separated_topk(first, A.expand(B, -1), E.expand(B, -1), cfg.init_poses, sep, cfg.topk)  # (B, N)
        if scorer.view is not None:  # the evidence's best pose stays on the shortlist (the last start below)
            best_e = (first - scorer.view_term(coarse).view(B, P)).argmin(1)
            missing = ~(keep == best_e[:, None]).any(1)
            keep[missing, -1] = best_e[missing]
        A, E, T = A[keep], E[keep], T[keep]  # the poses of each image: (B, N)
    grid = _grid(A, E, T, Z, B, cfg.init_distance)
    G = len(grid) // B
    scores = _score(scorer, grid, cfg.score_chunk)
    k = min(cfg.topk, G)
    az, el = grid.azimuth.view(B, G), grid.elevation.view(B, G)
    if scorer.view is not None and k > 1:
        # the last start from the evidence alone: the view term chooses among the starts, but the class
        # is decided on the category's best evidence, whose basin must be refined too
        pick = separated_topk(scores.view(B, G), az, el, k - 1, sep)
        pick = torch.cat([pick, evidence_start(scores - scorer.view_term(grid), az, el, pick, sep)], 1)
    else:
        pick = separated_topk(scores.view(B, G), az, el, k, sep)
    top = (pick + G * torch.arange(B, device=dev)[:, None]).reshape(-1)
    hyp = grid.select(top).detached()
    start = scores[top] if scorer is rc else _score(rc, hyp, cfg.score_chunk)  # the starts at full resolution
    init_losses = start.view(B, k).amin(1)
    t1 = time.perf_counter()
    best, best_loss, history = refine(rc, hyp, start, cfg, B)
    plain = rc.without_view()
    evidence = best_loss if plain is rc else _score(plain, best, cfg.score_chunk)
    t2 = time.perf_counter()
    results = []
    for b in range(B):
        rows = torch.arange(b * k, (b + 1) * k, device=dev)
        order = rows[torch.argsort(best_loss[rows])]
        mine = best.select(order)
        results.append(SolveResult(best=mine.select(torch.tensor([0], device=dev)), loss=float(best_loss[order[0]]),
                                   evidence=float(evidence[rows].min()),
                                   topk=mine, topk_losses=best_loss[order], init_loss=float(init_losses[b]),
                                   history=history, timing={"init": (t1 - t0) / B, "optimise": (t2 - t1) / B}))
    return results


def evidence_start(evidence: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor, picked: torch.Tensor,
                   separation: float) -> torch.Tensor:
    """Index (B, 1) per image of the lowest ``evidence`` loss among the hypotheses viewing the object
    from at least ``separation`` radians away from every ``picked`` one (the picked starts' basins are
    refined already), or the lowest not picked where none is that far.

    evidence, azimuth, elevation: (B, G); picked: (B, p) indices."""
    B, G = azimuth.shape
    ev = evidence.view(B, G).scatter(1, picked, float("inf"))
    best = ev.argmin(1, keepdim=True)
    rows = torch.arange(B, device=azimuth.device)[:, None]
    near = (view_angle(azimuth[:, :, None], elevation[:, :, None], azimuth[rows, picked][:, None, :],
                       elevation[rows, picked][:, None, :]) < separation).any(2)  # (B, G)
    far = ev.masked_fill(near, float("inf"))
    ok = torch.isfinite(far.amin(1, keepdim=True))
    return torch.where(ok, far.argmin(1, keepdim=True), best)


def refine(rc: RenderCompare, hyp: Hypotheses, start: torch.Tensor, cfg: InferConfig,
           images: int = 1) -> tuple[Hypotheses, torch.Tensor, list[float]]:
    """Adam on the pose, distance and (unless ``cfg.fix_shape``) the latent and scale of ``hyp``
    (``images`` × k hypotheses, image-major, scored by ``rc``; ``start`` (images·k,) their losses),
    for ``cfg.steps`` steps with early stopping on the mean over images of their best loss.
    Unless ``cfg.view_refine``, Adam and the compass search follow the evidence alone
    (``rc.without_view()``): the view classifier's density peaks at its bin centres and would pull the
    fine pose onto them; the returned losses are ``rc``'s, view term included, for choosing among the
    refined starts. Returns the best parameters seen per hypothesis (by the loss followed; the start
    where ``rc`` scores it lower), their ``rc`` losses (never above ``start``) and the history of that
    mean. ``hyp``'s tensors are optimised in place."""
    full, full_start, initial = rc, start, None
    if not cfg.view_refine:
        rc = rc.without_view()
        if rc is not full:
            initial = hyp.detached()
            start = _score(rc, initial, cfg.score_chunk)
    B, k = images, len(hyp) // images
    params = [hyp.azimuth, hyp.elevation, hyp.theta, hyp.distance]
    if not cfg.fix_shape:
        params += [hyp.latent, hyp.log_scale]
    for p in params:
        p.requires_grad_(True)
    history: list[float] = []
    best_loss = start.clone()
    best = hyp.detached()
    if cfg.steps > 0:
        opt = torch.optim.Adam(params, lr=cfg.lr)
        gamma = cfg.lr_final_factor ** (1.0 / max(cfg.steps, 1))
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
        best_seen, stall = float("inf"), 0
        for _ in range(cfg.steps):
            loss = rc.losses(hyp)
            with torch.no_grad():
                best_loss = _keep_better(best, best_loss, hyp, loss.detach())
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            sched.step()
            constrain(hyp, cfg)  # in place, without gradient
            cur = float(best_loss.view(B, k).amin(1).mean())  # mean over images of their best loss
            history.append(cur)
            if cur < best_seen - cfg.early_stop_tol:
                best_seen, stall = cur, 0
            else:
                stall += 1
                if stall >= cfg.early_stop_patience:
                    break
        with torch.no_grad():  # the parameters after the last step
            best_loss = _keep_better(best, best_loss, hyp, rc.losses(hyp.detached()))
    if cfg.polish_levels > 0:
        best_loss = polish(rc, best, best_loss, cfg)
    if initial is not None:  # rescored with the view term; a start that it scores better is kept
        best_loss = _keep_better(best, _score(full, best, cfg.score_chunk), initial, full_start)
    return best, best_loss, history


def refine_answers(rc: RenderCompare, hyp: Hypotheses, cfg: InferConfig) -> tuple[Hypotheses, torch.Tensor]:
    """The last, fine stage of coarse to fine: the answers ``hyp`` (one per image of ``rc``, image-major)
    refined by ``rc`` (a scorer on the unpooled features) on the evidence alone (the answer's basin
    is chosen; the view classifier knows no finer pose): ``cfg.final_steps`` Adam steps, then the
    compass search at the finest step of ``cfg.polish_*`` and its half. Returns the refined
    hypotheses and their losses under ``rc`` (never above the answers')."""
    plain = rc.without_view()
    start = _score(plain, hyp, cfg.score_chunk)
    finest = cfg.polish_step_deg / 2 ** max(cfg.polish_levels - 1, 0)
    fine = dataclasses.replace(cfg, steps=cfg.final_steps, polish_levels=2 if cfg.polish_levels > 0 else 0,
                               polish_step_deg=finest, view_refine=False)
    best, loss, _ = refine(plain, hyp.detached(), start, fine, len(hyp))
    return best, loss


def project_simplex(z: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of z (N, K) onto the probability simplex {z ≥ 0, Σ z = 1}."""
    u, _ = torch.sort(z, dim=1, descending=True)
    css = u.cumsum(1) - 1
    k = torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
    rho = ((u - css / k) > 0).sum(1, keepdim=True).clamp_min(1)  # the last index with u_k > (Σ_{≤k} u − 1) / k
    tau = css.gather(1, rho - 1) / rho.to(z.dtype)
    return (z - tau).clamp_min(0)


@torch.no_grad()
def constrain(hyp: Hypotheses, cfg: InferConfig) -> None:
    """Keep the optimised hypotheses (in place) in the plausible set: elevation in [−π/2, π/2], the
    distance above 5 % of the start's, the per-axis scale within exp(±``cfg.scale_bound``) and, with
    ``cfg.latent_simplex``, the latent on the simplex of CAD mixtures. A free scale and an
    extrapolated latent let a wrong pose stretch its silhouette over the object."""
    hyp.elevation.clamp_(-math.pi / 2, math.pi / 2)
    hyp.distance.clamp_(min=0.05 * cfg.init_distance)
    hyp.log_scale.clamp_(-cfg.scale_bound, cfg.scale_bound)
    if cfg.latent_simplex:
        hyp.latent.copy_(project_simplex(hyp.latent))


@torch.no_grad()
def polish(rc: RenderCompare, hyp: Hypotheses, loss: torch.Tensor, cfg: InferConfig) -> torch.Tensor:
    """Compass search on azimuth, elevation, theta and distance of every hypothesis, in place.

    The rasteriser's coverage has no gradient, so Adam only slides the texture under a fixed
    silhouette; where the silhouette is most of the evidence (thin parts: wings, legs) it stalls at
    its start. Each round scores the 8 moves ±δ of one parameter (angles by δ, distance by the
    factor exp(±δ/2)) of every hypothesis and keeps each hypothesis's best move when it lowers its
    loss; δ starts at ``cfg.polish_step_deg`` and halves ``cfg.polish_levels`` - 1 times, with at
    most ``cfg.polish_iterations`` rounds per δ (after the first, only the hypotheses that moved are
    rescored: the others' moves are known not to improve).

    Args: hyp (N,) hypotheses scored by ``rc``; loss (N,) their losses.
    Returns the new losses (N,), never higher."""
    n = len(hyp)
    dev = hyp.azimuth.device
    loss = loss.clone()
    eye = torch.eye(4, device=dev)
    moves = torch.cat([eye, -eye])  # (8, 4): ± each of azimuth, elevation, theta, log distance
    m = len(moves)
    delta = math.radians(cfg.polish_step_deg)
    for _ in range(cfg.polish_levels):
        step = moves * torch.tensor([delta, delta, delta, delta / 2], device=dev)
        active = torch.arange(n, device=dev)  # a hypothesis that did not move has no better move: not rescored
        for _ in range(cfg.polish_iterations):
            cand = hyp.select(active.repeat_interleave(m))  # (8A,) the moves of each active hypothesis
            s = step.repeat(len(active), 1)
            cand.azimuth = cand.azimuth + s[:, 0]
            cand.elevation = cand.elevation + s[:, 1]
            cand.theta = cand.theta + s[:, 2]
            cand.distance = cand.distance * s[:, 3].exp()
            constrain(cand, cfg)
            low, which = _score(rc, cand, cfg.score_chunk).view(len(active), m).min(1)
            better = low < loss[active]
            if not bool(better.any()):
                break
            moved = active[better]
            pick = (torch.arange(len(active), device=dev) * m + which)[better]
            for dst, src in zip(hyp.fields(), cand.fields()):
                dst[moved] = src[pick]
            loss[moved] = low[better]
            active = moved
        delta /= 2
    return loss
