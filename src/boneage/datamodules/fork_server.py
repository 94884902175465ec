"""Imported in the loader workers' fork server only (workers.PRELOADED), never elsewhere: the server
ignores the scheduler's signals (SIGTERM, and SIGUSR2 before a time limit), as its workers do.

A scheduler signals every process in a job. A fork server that died of it would make every worker
look dead to the training process (their exit status comes through the server), and the job's
orderly stop would end as "DataLoader worker exited unexpectedly". The server still ends with the
training process: its control socket closes.
"""

from boneage.datamodules.workers import ignore_scheduler_signals

ignore_scheduler_signals()
