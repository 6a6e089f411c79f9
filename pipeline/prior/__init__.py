"""The generative face prior: StyleGAN2 in plain PyTorch, safe checkpoint loaders, model zoo."""
