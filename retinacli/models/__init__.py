"""Torch models and their explicit registry. Importing this package imports torch."""
