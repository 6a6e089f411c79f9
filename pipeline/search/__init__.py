"""Latent search (PULSE) with temporal warm starts, batched across faces."""
