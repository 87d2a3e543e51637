"""Field-of-view estimation and the scale-normalising crop (with its exact inverse)."""
