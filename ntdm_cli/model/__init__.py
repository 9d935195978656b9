"""Feature extractors, neural textures with viewing bins, and the background bank."""
