"""Every private part of Lightning that boneage relies on, in one place, checked on import.

Lightning has no public API for these. A release could rename one without any import
error, and DDP under Hydra or EMA/SWA would then break quietly; `check()` fails loudly
instead, naming what is missing and the version range boneage is tested with, so that
the `pytorch-lightning` pin can be widened safely (tests/test_lightning_private.py).

- `subprocess_script._hydra_subprocess_cmd(local_rank) -> (command, cwd)`: how Lightning
  starts DDP ranks 1..N-1 under Hydra; boneage replaces it (boneage.runtime.ddp).
- `subprocess_script._launch_process_observer(child_processes)`: Lightning's watcher of those
  ranks, which SIGKILLs the launching process (a whole sweep) when one fails; boneage
  replaces it (boneage.runtime.ddp.watch_ranks).
- `WeightAveraging._average_model`, `._swap_models(module)`, `._copy_average_to_current(module)`:
  the averaged network and the swaps that boneage's EMA/SWA schedule differently
  (boneage.callbacks.averaging).
"""

from __future__ import annotations

import inspect
import subprocess
from collections.abc import Callable, Sequence
from importlib import metadata

import pytorch_lightning as pl
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.strategies.launchers import subprocess_script
from torch.optim.swa_utils import AveragedModel

TESTED_WITH = ">=2.6,<2.7"

# (owner, name, the parameters it must take after self)
REQUIRED: tuple[tuple[object, str, tuple[str, ...]], ...] = (
    (subprocess_script, "_hydra_subprocess_cmd", ("local_rank",)),
    (subprocess_script, "_launch_process_observer", ("child_processes",)),
    (WeightAveraging, "_swap_models", ("pl_module",)),
    (WeightAveraging, "_copy_average_to_current", ("pl_module",)),
)


def check() -> None:
    """Raise a clear error if the installed Lightning lacks a private part boneage uses."""
    problems = []
    for owner, name, parameters in REQUIRED:
        function = getattr(owner, name, None)
        if function is None:
            problems.append(f"{getattr(owner, '__name__', owner)}.{name} is missing")
        elif tuple(p for p in inspect.signature(function).parameters if p != "self") != parameters:
            problems.append(f"{name} no longer takes {parameters}")
    if "_average_model" not in vars(WeightAveraging(avg_fn=None)):
        problems.append("WeightAveraging._average_model is missing")
    if problems:
        raise RuntimeError(
            f"pytorch-lightning {metadata.version('pytorch-lightning')} is not compatible with boneage: "
            f"{'; '.join(problems)}. boneage is tested with pytorch-lightning{TESTED_WITH}: "
            f"pip install 'pytorch-lightning{TESTED_WITH}'."
        )


def start_ranks_with(command: Callable[[int], tuple[Sequence[str], str]]) -> None:
    """Make Lightning's subprocess launcher start DDP ranks under Hydra with `command(local_rank)`."""
    subprocess_script._hydra_subprocess_cmd = command


def watch_ranks_with(watcher: Callable[[list[subprocess.Popen]], None]) -> None:
    """Make Lightning's subprocess launcher hand the ranks it started to `watcher`."""
    subprocess_script._launch_process_observer = watcher


def averaged_model(averaging: WeightAveraging) -> AveragedModel | None:
    return averaging._average_model


def drop_average(averaging: WeightAveraging) -> None:
    averaging._average_model = None


def swap_average_and_current(averaging: WeightAveraging, module: pl.LightningModule) -> None:
    averaging._swap_models(module)


def copy_average_to_current(averaging: WeightAveraging, module: pl.LightningModule) -> None:
    averaging._copy_average_to_current(module)


check()
