"""`python -m boneage.train [overrides]`: compose the config, then run the job (`boneage.train.run`).

The job's libraries (torch, Lightning, timm: four seconds of a CPU) are imported once the config
is composed, in the process that runs the job. `--help`, `--cfg` and a mistyped key answer
without them, and so does a sweep's launching process where its jobs run elsewhere (the parallel
launcher's workers, submitit, SLURM). The loader workers' fork server starts just before those
imports, on another core, where this job's loaders will fork workers from it: it is ready
when the first batch is asked for.
"""

from __future__ import annotations

from omegaconf import DictConfig

from boneage.config.cli import hydra_command
from boneage.datamodules.workers import start_fork_server_for
from boneage.runtime.rank_folder import check_ranks_share_one_folder
from boneage.runtime.startup import collector_paused


@hydra_command("train", checks=[check_ranks_share_one_folder])
def main(cfg: DictConfig) -> float | None:
    with collector_paused():  # torch, Lightning, timm: a fifth quicker (counting GPUs may import torch first)
        start_fork_server_for(cfg.data)
        from boneage.train.run import run  # here, once composed: see above
    return run(cfg)
