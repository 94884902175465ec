"""OmegaConf resolvers the configs use (`${boneage.<name>:...}`), registered before composing."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import ListConfig, OmegaConf

from boneage.config.errors import ConfigError


def visible_gpus() -> list[int]:
    """Physical ids of the GPUs this process may use (honours CUDA_VISIBLE_DEVICES)."""
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [int(gpu) for gpu in declared.split(",") if gpu.strip()]
    import torch  # here: composing a config needs torch only to count GPUs

    return list(range(torch.cuda.device_count()))


def parallel_jobs(gpus: list[int], gpus_per_job: int, jobs_per_gpu: int, cpu_jobs: int) -> int:
    """How many jobs run at once: one per GPU group (times jobs_per_gpu), or cpu_jobs."""
    if not gpus:
        return max(1, cpu_jobs)
    return max(1, len(gpus) // gpus_per_job) * jobs_per_gpu


def loader_workers(devices: int | str | list | None = 1) -> int:
    """Loader processes per device: this process's CPU cores shared among the devices, minus
    one for the training process itself, at most 8 (more rarely helps and costs memory)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count = devices if isinstance(devices, int) and devices > 0 else max(1, len(visible_gpus()))
    return max(0, min(8, cores // count - 1))


def input_size(model: str, size: int | None) -> int:
    """`size`, or where it is null the input size of the weights timm's `pretrained_cfg` names for `model`."""
    if size is not None:
        return size
    import timm  # here: only a config that leaves the size to the backbone pays for the import

    pretrained = timm.models.get_pretrained_cfg(model) if timm.is_model(model) else None
    if pretrained is None or not pretrained.input_size:
        raise ConfigError(f"model.image_size=null: timm knows no input size for {model!r}; set model.image_size.")
    return int(pretrained.input_size[-1])


def study_storage(path_or_url: str) -> str:
    """A study's storage: a database URL as given; a journal file's path made absolute (its folder
    created), so that jobs started in another working directory (SLURM) open the same journal."""
    if "://" in path_or_url:
        return path_or_url
    journal = Path(path_or_url).expanduser().resolve()
    journal.parent.mkdir(parents=True, exist_ok=True)
    return str(journal)


def slurm_tasks_per_node(devices: int | str | list | None, gpus_per_node: int | None) -> int:
    """SLURM tasks per node: one per process Lightning runs on a node (trainer.devices), or one per
    GPU where devices is -1/auto; never 0, which sbatch refuses (a CPU partition has no GPUs)."""
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, list | ListConfig):
        return max(1, len(devices))
    return max(1, int(gpus_per_node or 0))


def rank_suffix() -> str:
    """'' in rank 0 or a single process; '_rank<k>' in rank k of a job torchrun or srun started, so
    that each rank of a run writes its own log file in the run's one folder."""
    rank = int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)
    return f"_rank{rank}" if rank else ""


def unique_dir(path: str) -> str:
    """`path`, or `path_1`, `path_2`...: the first that did not exist, created here to claim it.

    Two runs started in the same second would otherwise share a directory, and the second
    would overwrite the first's files.
    """
    candidate, suffix = Path(path), 0
    while True:
        try:
            candidate.mkdir(parents=True)
            return str(candidate)
        except FileExistsError:
            suffix += 1
            candidate = Path(f"{path}_{suffix}")


RESOLVERS = {
    "boneage.visible_gpus": visible_gpus,
    "boneage.parallel_jobs": parallel_jobs,
    "boneage.study_storage": study_storage,  # a study journal's absolute path (or a database URL as given)
    "boneage.input_size": input_size,
    "boneage.loader_workers": loader_workers,
    "boneage.unique_dir": unique_dir,
    "boneage.rank_suffix": rank_suffix,
    "boneage.slurm_tasks_per_node": slurm_tasks_per_node,
    "boneage.not": lambda value: not value,
    "boneage.slug": lambda metric: metric.replace("/", "_"),  # val/mae -> val_mae (file names)
    "boneage.direction": lambda mode: {"min": "minimize", "max": "maximize"}[mode],  # task.mode -> Optuna's
}


def register_resolvers() -> None:
    for name, function in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function, use_cache=True)
