"""`make measure-pruning`: what pruning saves. The demo search (lr, weight decay, dropout, loss) is
run once per pruner, with the same trials budget and sampler seed, and each study is read back.

For each pruner it prints the epochs trained in all (each epoch's validation is one report to the
study), the best val MAE, how many trials were pruned, and both as a share of the unpruned
search's. The first pruner named is the baseline (default: none). Each search's runs and journal
are kept under outputs/measure_pruning/<time>/<pruner>/.
    make measure-pruning ARGS="--trials 12 --epochs 6"
    make measure-pruning ARGS="search.pruner.min_resource=2 --pruners successive_halving"
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import optuna

from boneage.search.storage import open_storage

STUDY = "measure_pruning"


def run_search(pruner: str, folder: Path, args: argparse.Namespace) -> None:
    """One search on the demo data with `pruner`; its log goes to <folder>/search.log."""
    overrides = [
        "-m", "hparams_search=optuna", "experiment=demo", f"search/pruner={pruner}",
        f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.sampler.n_startup_trials={args.startup}",
        f"hydra.sweeper.study_name={STUDY}", f"hydra.sweeper.storage={folder / 'optuna.journal'}",
        f"hydra.sweep.dir={folder}", f"trainer.max_epochs={args.epochs}", f"seed={args.seed}",
        f"data.source.n_subjects={args.subjects}", "callbacks.progress_bar.refresh_rate=0", *args.overrides,
    ]  # fmt: skip
    folder.mkdir(parents=True)
    with open(folder / "search.log", "w") as log:
        done = subprocess.run([sys.executable, "-m", "boneage.train", *overrides], stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"the {pruner} search failed: see {folder / 'search.log'}")


def summarise(folder: Path) -> dict:
    """Epochs trained, best value and pruned trials of the study a search left in `folder`."""
    study = optuna.load_study(study_name=STUDY, storage=open_storage(str(folder / "optuna.journal")))
    trials = study.get_trials(deepcopy=False)
    return {
        "trials": len(trials),
        "epochs": sum(len(trial.intermediate_values) for trial in trials),
        "pruned": sum(trial.state == optuna.trial.TrialState.PRUNED for trial in trials),
        "best": study.best_value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pruners", nargs="+", default=["none", "successive_halving", "hyperband"])
    parser.add_argument("--trials", type=int, default=20, help="trials per search")
    parser.add_argument("--startup", type=int, default=10, help="random trials before TPE takes over")
    parser.add_argument("--epochs", type=int, default=20, help="most epochs a trial trains")
    parser.add_argument("--subjects", type=int, default=200, help="children in the demo data")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's and every trial's seed")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for every search")
    args = parser.parse_args()
    root = Path("outputs") / "measure_pruning" / time.strftime("%Y-%m-%d_%H-%M-%S")
    results = {}
    for pruner in args.pruners:
        started = time.monotonic()
        run_search(pruner, root / pruner, args)
        results[pruner] = summarise(root / pruner) | {"seconds": time.monotonic() - started}
        print(f"{pruner}: {results[pruner]}", flush=True)
    baseline = results[args.pruners[0]]
    print(f"\n{args.trials} trials of up to {args.epochs} epochs, seed {args.seed} ({root})\n")
    print("| pruner | epochs | share of epochs | pruned trials | best val MAE | against baseline | minutes |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for pruner, result in results.items():
        print(
            f"| {pruner} | {result['epochs']} | {result['epochs'] / baseline['epochs']:.0%} | {result['pruned']} "
            f"| {result['best']:.3f} | {result['best'] / baseline['best'] - 1:+.1%} | {result['seconds'] / 60:.1f} |"
        )


if __name__ == "__main__":
    main()
