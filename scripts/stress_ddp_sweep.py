"""`make stress`: the 3-job DDP sweep that once hung, run again and again; hangs must be 0.

Each round runs, on the demo data, the sweep of the unattended-nights issue (ddp_sim: two
CPU processes per job, loader workers on) under a time limit; a round that passes it is a
hang. Each round's output and sweep folder are kept under outputs/stress/<time>/. Prints
one line per round and a summary; exits non-zero on any hang or failure.
Outside CI: ten rounds take about ten minutes.   make stress ARGS="--rounds 3"
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SWEEP = [
    "-m", "experiment=demo", "trainer=ddp_sim", "trainer.max_epochs=2", "+trainer.limit_train_batches=0.1",
    "+trainer.limit_val_batches=0.2", "+trainer.limit_test_batches=0.2", "optimizer.lr=0.005,0.01,0.02",
    "callbacks.progress_bar.refresh_rate=0",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--limit-s", type=float, default=900, help="a round running longer is a hang")
    args = parser.parse_args()
    outcomes = []
    folder = Path("outputs") / "stress" / time.strftime("%Y-%m-%d_%H-%M-%S")
    folder.mkdir(parents=True)
    for round_number in range(args.rounds):
        sweep_dir, log = folder / str(round_number), folder / f"round{round_number}.log"
        started = time.monotonic()
        with open(log, "w") as output:  # a file, not a pipe: a stray process cannot hold the round open
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "boneage.train", *SWEEP, f"hydra.sweep.dir={sweep_dir}"],
                    stdout=output, stderr=subprocess.STDOUT, timeout=args.limit_s,
                )  # fmt: skip
                outcome = "ok" if done.returncode == 0 and _finished(sweep_dir) == 3 else "failed"
            except subprocess.TimeoutExpired:
                outcome = "HANG"
        seconds = time.monotonic() - started
        outcomes.append((outcome, seconds))
        why = "" if outcome == "ok" else f" (see {log})"
        print(f"round {round_number + 1:>2}/{args.rounds}: {outcome:<6} {seconds:6.1f} s{why}", flush=True)
    hangs = sum(outcome == "HANG" for outcome, _ in outcomes)
    failures = sum(outcome == "failed" for outcome, _ in outcomes)
    times = [seconds for _, seconds in outcomes]
    spread = f"{min(times):.1f}-{max(times):.1f} s"
    print(
        f"\n{args.rounds} rounds: {hangs} hangs, {failures} failures; "
        f"{statistics.median(times):.1f} s median per round ({spread}), {sum(times):.0f} s in all"
    )
    if hangs or failures:
        raise SystemExit(1)


def _finished(sweep_dir: Path) -> int:
    records = [json.loads(path.read_text()) for path in sweep_dir.glob("*/run.json")]
    return sum(record.get("status") == "finished" for record in records)


if __name__ == "__main__":
    main()
