"""The fast classifier (3D-CompNets eq. 7): a category score from feature/prototype matches alone.

Used at inference to shortlist the categories that render-and-compare solves, and during training to
measure the confusion between categories that sets the cross-category weights ω.
"""

from __future__ import annotations

import torch


def fast_class_scores(features: torch.Tensor, prototypes: list[torch.Tensor], bank: torch.Tensor,
                      chunk: int = 4096) -> torch.Tensor:
    """3D-CompNets eq. 7: S_y = Σ_i max(max_k f_i·C_k^y, max_n f_i·β_n).

    Args:
        features: (N, d, H, W) unit image features.
        prototypes: per category (P_y, d) unit texture features.
        bank: (B, d) background features.
    Returns:
        scores: (N, Y), mean over feature-map locations (higher = more likely)."""
    N, d, H, W = features.shape
    f = features.permute(0, 2, 3, 1).reshape(N, H * W, d)
    bg = (f @ bank.T).amax(-1)  # (N, HW)
    scores = []
    for protos in prototypes:
        if protos.numel() == 0:
            scores.append(bg.mean(-1))
            continue
        best = torch.full_like(bg, -2.0)
        for s in range(0, protos.shape[0], chunk):
            best = torch.maximum(best, (f @ protos[s:s + chunk].T).amax(-1))
        scores.append(torch.maximum(best, bg).mean(-1))
    return torch.stack(scores, -1)
