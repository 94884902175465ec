"""`python -m boneage.resume RUN_DIR|last [overrides]`: continue a stopped run where it stopped.

The run continues in its own directory, with its own composed config (`.hydra/config.yaml`),
from `checkpoints/last.ckpt` (the end of its last complete epoch). `last` picks the most
recently active run under outputs/ and multirun/ that did not finish.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from boneage.records import RunRecord, still_running

SEARCHED = ("outputs", "multirun")


def latest_unfinished_run(roots: Sequence[Path]) -> Path:
    candidates = [
        checkpoint.parent.parent
        for root in roots
        for checkpoint in root.rglob("checkpoints/last.ckpt")
        if _resumable(RunRecord(checkpoint.parent.parent).read_if_readable())
    ]
    if not candidates:
        raise SystemExit(f"No unfinished run with checkpoints/last.ckpt under {', '.join(map(str, roots))}.")
    return max(candidates, key=lambda run: (run / "checkpoints" / "last.ckpt").stat().st_mtime)


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


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        raise SystemExit(__doc__)
    target, overrides = args[0], args[1:]
    run = latest_unfinished_run([Path(root) for root in SEARCHED]) if target == "last" else Path(target)
    command = resume_command(run, overrides)
    print("Resuming:", " ".join(command), flush=True)
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
