"""The ranks of one job that torchrun or srun started share one run folder.

Checked from the command line before Hydra composes (and names a folder), in a module that
imports nothing heavy: the train command runs its checks before it imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def check_ranks_share_one_folder(arguments: Sequence[str]) -> None:
    """Stop a rank that torchrun or srun started without `hydra.run.dir`: every rank names its run
    folder from its own clock, so the ranks of one job (on two nodes, a second apart) would split
    into several folders. Sweeps are fine: the launcher names each job's folder once for all."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        world_size = int(os.environ.get("WORLD_SIZE", 1))
    else:  # set in an srun step only, not in the batch script that calls srun
        world_size = int(os.environ.get("SLURM_STEP_NUM_TASKS", 1))
    multirun = any(argument in ("-m", "--multirun") for argument in arguments)
    pinned = any(argument.lstrip("+").startswith("hydra.run.dir=") for argument in arguments)
    if world_size > 1 and not multirun and not pinned:
        raise SystemExit(
            f"This is one of {world_size} ranks started by torchrun or srun, and each would name its own run "
            "folder from the clock. Give every rank the same one: hydra.run.dir=<folder> (e.g. on a shared "
            "disk, outputs/<name>). See README, 'Several nodes'."
        )
