"""Hyperparameter search on Optuna: the study's storage, the search space Hydra's override syntax
describes, the trial a training job reports to, and the sweeper that runs the trials."""
