"""Training: SFT (SteerLM and Janus) on transformers.Trainer, packing, checkpoints, export."""
