"""Evaluation of models against ground truth (library side of `retina evaluate`)."""
