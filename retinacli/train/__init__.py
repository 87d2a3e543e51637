"""Training: dataset readers, augmentation, losses, the loop and self-describing checkpoints."""
