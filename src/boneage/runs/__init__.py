"""Runs on disk: the table of runs under a folder, ranked by their task's metric."""
