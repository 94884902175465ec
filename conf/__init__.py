"""boneage's Hydra config groups, installed with the package as `boneage.conf`."""
