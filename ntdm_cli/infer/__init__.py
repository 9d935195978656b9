"""Render-and-compare inference: pose, shape, class, amodal/visible/occluded masks."""
