"""Training past one process: torch.distributed (DDP, gloo on CPU / nccl on GPU) for rankers."""
