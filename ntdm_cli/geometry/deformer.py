"""The deformable mesh Γ(z) = s ⊙ (v + Ψ(v, z)) of paper eq. 1, and its (de)serialisation.

Ψ is an MLP of the template vertex v (optionally positionally encoded) and the shape latent z of size
K (the number of CADs of the category; one-hot per CAD when fitting, any vector at inference);
s = (s_x, s_y, s_z) is the learned average scale. Two ways of feeding z (config ``conditioning``):

* ``"linear"`` (default): Ψ(v, z) = Σ_k z_k · head_k(trunk(PE(v))): a shared trunk and one linear
  output head per CAD, i.e. an MLP whose last layer is bilinear in (features, z). The trunk runs once
  for all latents (K times cheaper to fit than concatenation; a batch of B latents costs one trunk
  pass at inference), and an intermediate z blends the CAD displacement fields, so the mean latent
  gives the mean shape and the shape space that inference searches is convex.
* ``"concat"``: Ψ(v, z) = MLP([PE(v), z]), the textbook conditioning (the z part of the first layer
  is computed as a per-latent bias).

Units: ``forward`` returns vertices in the object (category) frame, in CAD units unless the deformer
was fitted with ``normalize`` (then in units of the stored ``normalization`` length).

A fitted deformer also carries ``face_gaps`` (K, F): how far each face of each CAD's fitted shape is
from that CAD's surface (geometry.holes); the faces that span empty space are left out of silhouettes
and exported meshes. Deformers written before it existed load with ``face_gaps = None`` (no holes).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ntdm_cli.errors import ArtifactError
from ntdm_cli.geometry.template import Template, make_template

CONDITIONINGS = ("linear", "concat")


def positional_encoding(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """[x, sin(2^i π x), cos(2^i π x)] for i < frequencies. x: (..., 3) -> (..., 3 + 6·frequencies)."""
    if frequencies <= 0:
        return x
    f = (2.0 ** torch.arange(frequencies, dtype=x.dtype, device=x.device)) * math.pi
    a = (x[..., None, :] * f[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(a), torch.cos(a)], -1)


class Deformer(nn.Module):
    """Deformable mesh of one category: Γ(z) = s ⊙ (v + Ψ(v, z)).

    template: the sphere template (verts (V, 3) on the unit sphere).
    num_latents: K, the size of z (= the number of CADs fitted).
    hidden, layers: MLP width and number of hidden layers; pe_frequencies: positional encoding
    octaves of v (0: raw coordinates); conditioning: "linear" or "concat" (module docstring).
    cad_names: K names; category: the category label; scale: initial s (3,);
    normalization: length unit of the output relative to the CAD files (1: CAD units).
    """

    def __init__(self, template: Template, num_latents: int, hidden: int = 256, layers: int = 4,
                 pe_frequencies: int = 6, conditioning: str = "linear", cad_names: Sequence[str] | None = None,
                 category: str = "", scale: Sequence[float] | torch.Tensor | None = None,
                 normalization: float = 1.0):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        if num_latents < 1 or layers < 1 or hidden < 1:
            raise ValueError("num_latents, layers and hidden must be positive")
        self.num_latents = int(num_latents)
        self.hidden, self.layers = int(hidden), int(layers)
        self.pe_frequencies, self.conditioning = int(pe_frequencies), conditioning
        self.cad_names = list(cad_names) if cad_names is not None else [f"cad{k}" for k in range(num_latents)]
        if len(self.cad_names) != self.num_latents:
            raise ValueError(f"{len(self.cad_names)} CAD names for {num_latents} latents")
        self.category = category
        self.normalization = float(normalization)
        self.subdivisions = template.subdivisions
        self.register_buffer("template_verts", template.verts.float().clone())
        self.register_buffer("template_faces", template.faces.long().clone())
        self.register_buffer("verts_uvs", template.verts_uvs.float().clone())
        self.register_buffer("faces_uvs", template.faces_uvs.long().clone())
        in_dim = 3 + 6 * self.pe_frequencies
        self.first = nn.Linear(in_dim, hidden)
        self.latent_in = nn.Linear(num_latents, hidden, bias=False) if conditioning == "concat" else None
        self.hidden_layers = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(layers - 1)])
        n_out = 3 * num_latents if conditioning == "linear" else 3
        self.out = nn.Linear(hidden, n_out)
        nn.init.zeros_(self.out.weight)   # start from the (scaled) sphere
        nn.init.zeros_(self.out.bias)
        s = torch.ones(3) if scale is None else torch.as_tensor(scale, dtype=torch.float32).reshape(3)
        self.log_scale = nn.Parameter(torch.log(s.clamp_min(1e-8)))
        # (K, F) float32, distance of each face of Γ(z_k) to CAD k in units of its bbox diagonal
        # (geometry.holes.face_gaps), or None: a buffer that moves with the module, kept out of the
        # state dict so that deformers written without it load
        self.register_buffer("face_gaps", None, persistent=False)

    # ------------------------------------------------------------------ views
    @property
    def template(self) -> Template:
        return Template(self.template_verts, self.template_faces, self.verts_uvs, self.faces_uvs,
                        self.subdivisions)

    @property
    def faces(self) -> torch.Tensor:
        """(F, 3) int64 faces of every deformed mesh (the template's)."""
        return self.template_faces

    @property
    def scale(self) -> torch.Tensor:
        """s: (3,) per-axis scale, output units."""
        return self.log_scale.exp()

    @property
    def latents(self) -> torch.Tensor:
        """(K, K) one-hot latents, row k = CAD k."""
        return torch.eye(self.num_latents, device=self.template_verts.device)

    def mean_latent(self) -> torch.Tensor:
        """(1, K) the average of the CAD latents."""
        return torch.full((1, self.num_latents), 1.0 / self.num_latents, device=self.template_verts.device)

    def latent_index(self, key: int | str) -> int:
        """Index of a CAD given by 0-based index or name."""
        if isinstance(key, str) and not key.lstrip("-").isdigit():
            if key not in self.cad_names:
                raise KeyError(key)
            return self.cad_names.index(key)
        k = int(key)
        if not 0 <= k < self.num_latents:
            raise IndexError(k)
        return k

    # ---------------------------------------------------------------- forward
    def features(self) -> torch.Tensor:
        """Trunk features of the template vertices (linear conditioning): (V, hidden)."""
        h = torch.nn.functional.silu(self.first(positional_encoding(self.template_verts, self.pe_frequencies)))
        for layer in self.hidden_layers:
            h = torch.nn.functional.silu(layer(h))
        return h

    def displacement(self, z: torch.Tensor) -> torch.Tensor:
        """Ψ(v, z): (B, V, 3) for z (B, K), in template units (before the scale)."""
        if z.dim() != 2 or z.shape[1] != self.num_latents:
            raise ValueError(f"z must be (B, {self.num_latents}), got {tuple(z.shape)}")
        z = z.to(self.template_verts.dtype)
        if self.conditioning == "linear":
            h = self.features()                                              # (V, H)
            w = self.out.weight.view(self.num_latents, 3, self.hidden)       # (K, 3, H)
            b = self.out.bias.view(self.num_latents, 3)
            wz = torch.einsum("bk,kch->bch", z, w)                           # (B, 3, H)
            return torch.einsum("vh,bch->bvc", h, wz) + (z @ b)[:, None, :]
        pe = positional_encoding(self.template_verts, self.pe_frequencies)
        h = self.first(pe)[None] + self.latent_in(z)[:, None]               # (B, V, H)
        h = torch.nn.functional.silu(h)
        for layer in self.hidden_layers:
            h = torch.nn.functional.silu(layer(h))
        return self.out(h)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Γ(z): (B, V, 3) vertices in the object frame for latents z (B, K)."""
        return self.scale * (self.template_verts[None] + self.displacement(z))

    def arch(self) -> dict[str, Any]:
        return {"num_latents": self.num_latents, "hidden": self.hidden, "layers": self.layers,
                "pe_frequencies": self.pe_frequencies, "conditioning": self.conditioning,
                "subdivisions": self.subdivisions}


# ------------------------------------------------------------------------------------ serialisation

def deformer_to_artifact_data(d: Deformer) -> dict[str, Any]:
    """The deformer as a nested mapping for :func:`ntdm_cli.artifacts.write_artifact` (also used to
    embed deformers in the model artifact): ``arch/*`` scalars, ``weights/<param>`` arrays,
    ``template/{verts,faces,verts_uvs,faces_uvs}``, ``scale`` (3,), ``cad_names`` (K,),
    ``category``, ``normalization`` and, when known, ``face_gaps`` (K, F)."""
    weights = {k: v.detach().cpu().numpy() for k, v in d.state_dict().items()
               if k not in ("template_verts", "template_faces", "verts_uvs", "faces_uvs")}
    return {
        "arch": {k: (np.array(v) if not isinstance(v, str) else v) for k, v in d.arch().items()},
        "weights": weights,
        "template": {"verts": d.template_verts.cpu().numpy(), "faces": d.template_faces.cpu().numpy(),
                     "verts_uvs": d.verts_uvs.cpu().numpy(), "faces_uvs": d.faces_uvs.cpu().numpy()},
        "scale": d.scale.detach().cpu().numpy(),
        "cad_names": list(d.cad_names),
        "category": d.category,
        "normalization": np.array(d.normalization),
        **({"face_gaps": d.face_gaps.cpu().numpy()} if d.face_gaps is not None else {}),
    }


def deformer_from_artifact_data(data: Mapping[str, Any], where: str = "deformer") -> Deformer:
    """Rebuild a :class:`Deformer` from :func:`deformer_to_artifact_data` output (e.g. a sub-group of
    a model artifact read by ``read_artifact``). ``where`` names the source in errors."""
    try:
        arch = data["arch"]
        t = data["template"]
        template = Template(torch.as_tensor(np.asarray(t["verts"]), dtype=torch.float32),
                            torch.as_tensor(np.asarray(t["faces"]), dtype=torch.int64),
                            torch.as_tensor(np.asarray(t["verts_uvs"]), dtype=torch.float32),
                            torch.as_tensor(np.asarray(t["faces_uvs"]), dtype=torch.int64),
                            int(arch["subdivisions"]))
        names = data["cad_names"]
        names = [names] if isinstance(names, str) else list(names)
        d = Deformer(template, int(arch["num_latents"]), hidden=int(arch["hidden"]), layers=int(arch["layers"]),
                     pe_frequencies=int(arch["pe_frequencies"]), conditioning=str(arch["conditioning"]),
                     cad_names=names, category=str(data.get("category", "")),
                     normalization=float(np.asarray(data.get("normalization", 1.0))))
        state = {k: torch.as_tensor(np.asarray(v)) for k, v in data["weights"].items()}
        state.update(template_verts=template.verts, template_faces=template.faces,
                     verts_uvs=template.verts_uvs, faces_uvs=template.faces_uvs)
        d.load_state_dict(state, strict=True)
        if "face_gaps" in data:
            gaps = torch.as_tensor(np.asarray(data["face_gaps"]), dtype=torch.float32)
            shape = (d.num_latents, d.template_faces.shape[0])
            if tuple(gaps.shape) != shape or not bool(torch.isfinite(gaps).all()) or bool((gaps < 0).any()):
                raise ValueError(f"face_gaps must be {shape} finite distances ≥ 0, got shape {tuple(gaps.shape)}")
            d.face_gaps = gaps
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{where}: incomplete or inconsistent deformer data "
                            f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})")
    return d.eval()


def load_deformer(path: str | os.PathLike) -> Deformer:
    """Read a ``kind=deformer`` artifact written by ``ntdm fit-deformer``."""
    from ntdm_cli.artifacts import read_artifact

    art = read_artifact(path, "deformer")
    return deformer_from_artifact_data(art.data, where=str(path))

