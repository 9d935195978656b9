"""Training of backbone + neural textures by contrastive EM (CoKe), scaled as 3D-CompNets."""
