"""boneage's Hydra sweeper: the Optuna search with pruning and a freed slot starting the next trial."""
