"""Pure functions on arrays: thresholds, masks, densities (and later graphs, lesions, biomarkers)."""
