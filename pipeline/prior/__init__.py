"""The generative face prior: StyleGAN2 in plain PyTorch, safe checkpoint loaders, model zoo.

Public API (import from the submodules; nothing heavy is imported here):
  pipeline.prior.zoo.load_generator(name_or_path, device="cpu", dtype="float32") -> Generator
  pipeline.prior.zoo.resolve_model(name_or_path) -> Path        (ModelNotAvailableError when not cached)
  pipeline.prior.zoo.fetch_model(name) -> Path                  (download, verify, convert)
  pipeline.prior.checkpoint.load_checkpoint(path) -> (Generator, format)
  pipeline.prior.checkpoint.convert_checkpoint(src, dst) -> (Generator, format)
  pipeline.prior.stylegan2.Generator / GeneratorConfig / make_random_generator(resolution, seed)
"""
