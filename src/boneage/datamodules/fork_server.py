"""The loader workers' fork server's one preloaded module (workers.PRELOADED), imported there and
never elsewhere.

It imports what every worker needs (torch, albumentations, numpy) once, with the garbage
collector paused and the result frozen (boneage.runtime.startup): the server starts sooner,
and the workers forked from it share those objects' memory rather than copy it.

The server ignores the scheduler's signals (SIGTERM, and SIGUSR2 before a time limit), as its
workers do. A scheduler signals every process in a job. A fork server that died of it would make
every worker look dead to the training process (their exit status comes through the server), and
the job's orderly stop would end as "DataLoader worker exited unexpectedly". The server still ends
with the training process: its control socket closes.
"""

from boneage.runtime.startup import collector_paused

with collector_paused():
    import boneage.datamodules.dataset  # noqa: F401  (preloaded for the workers)
    from boneage.datamodules.workers import ignore_scheduler_signals

ignore_scheduler_signals()
