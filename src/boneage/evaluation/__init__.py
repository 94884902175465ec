"""Evaluation of trained runs: metrics, test-time augmentation, ensembles, reports."""
