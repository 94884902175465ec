"""`python -m boneage.resume RUN_DIR|SWEEP_DIR|last [overrides]`: continue what stopped, where it stopped.

A run continues in its own directory, with its own composed config (`.hydra/config.yaml`),
from `checkpoints/last.ckpt` (the end of its last complete epoch). A sweep (a folder with
Hydra's `multirun.yaml`) is launched again as it was, into its own folder, with
`sweep_resume=true`: finished jobs are kept, the others continue or start again (see
boneage.runs.sweep_resume); add `retry_failed=true` to rerun jobs that failed on a bad value.
`last` picks the most recently active unfinished run under outputs/ and multirun/, or the
sweep it belongs to.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from boneage.runs.records import RunRecord, still_running

SEARCHED = ("outputs", "multirun")
SWEEP_RECORD = "multirun.yaml"  # Hydra's record of a sweep: its overrides, launcher and config sources


def latest_unfinished_run(roots: Sequence[Path]) -> Path:
    """The unfinished run (with a record or a last checkpoint) that was active last."""
    markers = [marker for root in roots for pattern in ("*/run.json", "*/checkpoints/last.ckpt")
               for marker in root.rglob(pattern)]  # fmt: skip
    runs = {
        marker.parent.parent if marker.name == "last.ckpt" else marker.parent: marker.stat().st_mtime
        for marker in sorted(markers, key=lambda m: m.stat().st_mtime)
    }
    candidates = [run for run in runs if _resumable(RunRecord(run).read_if_readable())]
    if not candidates:
        raise SystemExit(f"No unfinished run under {', '.join(map(str, roots))}.")
    return max(candidates, key=runs.__getitem__)


def _resumable(record: dict) -> bool:
    """Not finished, and not still running (a record left "running" by a dead process is resumable)."""
    return record.get("status") != "finished" and not still_running(record)


def resume_command(run: Path, overrides: Sequence[str] = ()) -> list[str]:
    """The `boneage.train` command that continues `run` in place."""
    run = run.resolve()
    for needed in (run / ".hydra" / "config.yaml", run / "checkpoints" / "last.ckpt"):
        if not needed.is_file():
            raise SystemExit(f"Cannot resume {run}: {needed.relative_to(run)} is missing.")
    return [
        sys.executable, "-m", "boneage.train",
        f"--config-dir={run / '.hydra'}", "--config-name=config",
        f"hydra.run.dir='{run}'", "hydra.output_subdir=null",  # keep the run's own .hydra files
        f"ckpt_path='{run / 'checkpoints' / 'last.ckpt'}'",
        *overrides,
    ]  # fmt: skip


def is_sweep(folder: Path) -> bool:
    return (folder / SWEEP_RECORD).is_file()


def sweep_resume_command(sweep: Path, overrides: Sequence[str] = ()) -> list[str]:
    """The `boneage.train -m` command that launches `sweep` again, as it was, into its own folder."""
    sweep = sweep.resolve()
    hydra = OmegaConf.load(sweep / SWEEP_RECORD).hydra
    config_dirs = [
        f"--config-dir={source.path}"
        for source in hydra.runtime.config_sources
        if source.provider == "command-line" and source.schema == "file"
    ]
    own = [o for o in hydra.overrides.hydra if not o.startswith(("hydra.mode=", "hydra.sweep.dir="))]
    return [
        sys.executable, "-m", "boneage.train", "-m", f"--config-name={hydra.job.config_name}", *config_dirs,
        *hydra.overrides.task, *own, f"hydra.sweep.dir='{sweep}'", "sweep_resume=true", *overrides,
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        raise SystemExit(__doc__)
    target, overrides = args[0], args[1:]
    run = latest_unfinished_run([Path(root) for root in SEARCHED]) if target == "last" else Path(target)
    if target == "last" and is_sweep(run.parent):  # a job of a sweep: the sweep goes on
        run = run.parent
    command = sweep_resume_command(run, overrides) if is_sweep(run) else resume_command(run, overrides)
    print("Resuming:", " ".join(command), flush=True)
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
