"""Training, resuming and cross-validation on PyTorch Lightning (CPU, one GPU, DDP on several)."""
