"""`make measure-pruning`: what pruning saves. The demo search (lr, weight decay, dropout, loss) is
run once per pruner, with the same trials budget and sampler seed, and each study is read back.

For each pruner it prints the epochs trained in all (each epoch's validation is one report to the
study), the best val MAE, how many trials were pruned, and both as a share of the unpruned
search's. The first pruner named is the baseline (default: none). Each search's runs and journal
are kept under outputs/measure_pruning/<time>/<pruner>/.
    make measure-pruning ARGS="--trials 12 --epochs 6"
    make measure-pruning ARGS="search.pruner.min_resource=2 --pruners successive_halving"

--replay <journal> trains nothing: it replays the trials of an unpruned search, one after another,
through each pruner (its conf/search/pruner/ config), and prints what each would have trained and
kept. Every pruner then judges the same trials: it shows the pruner's part apart from the sampler's,
which in a real pruned search learns from the pruned trials and samples other ones. It then prints,
for the first 12 epochs, how well an epoch's reports rank the trials by their final values: what
any pruner that judges then has to go on.
    make measure-pruning ARGS="--replay outputs/measure_pruning/<time>/none/optuna.journal"
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf

from boneage.search.storage import open_storage

PRUNER_CONFIGS = Path(__file__).resolve().parents[1] / "conf" / "search" / "pruner"

STUDY = "measure_pruning"


def run_search(pruner: str, folder: Path, args: argparse.Namespace) -> None:
    """One search on the demo data with `pruner`; its log goes to <folder>/search.log."""
    overrides = [
        "-m", "hparams_search=optuna", "experiment=demo", f"search/pruner={pruner}",
        f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.sampler.n_startup_trials={args.startup}",
        f"hydra.sweeper.study_name={STUDY}", f"hydra.sweeper.storage={folder / 'optuna.journal'}",
        f"hydra.sweep.dir={folder}", f"trainer.max_epochs={args.epochs}", f"seed={args.seed}",
        f"data.source.n_subjects={args.subjects}", "callbacks.progress_bar.refresh_rate=0",
        "test=false",  # a trial's result is its best checkpoint's val metric: the test set would only cost time
        *args.overrides,
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


def finished_trials(journal: Path) -> tuple[optuna.Study, list[optuna.trial.FrozenTrial]]:
    """The study in `journal` and its finished trials, in their order."""
    study = optuna.load_study(study_name=STUDY, storage=open_storage(str(journal)))
    return study, study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def replay(journal: Path, pruner_name: str, overrides: list[str]) -> dict:
    """What `pruner_name` would have trained and kept of the finished trials in `journal`, run one
    at a time in their order: each trial's reports (its best so far) go to the pruner until it prunes.
    Of `overrides`, those of `search.pruner.<key>` apply to the pruners that have that key."""
    source, trials = finished_trials(journal)
    # max_epochs, unless early stopping ended every trial sooner (Hyperband's max_resource)
    longest = max(len(trial.intermediate_values) for trial in trials)
    pruner = OmegaConf.load(PRUNER_CONFIGS / f"{pruner_name}.yaml")
    changed = OmegaConf.from_dotlist([key.removeprefix("search.pruner.") for key in overrides])
    pruner.merge_with({key: value for key, value in changed.items() if key in pruner})
    config = OmegaConf.merge({"trainer": {"max_epochs": longest}, "pruner": pruner})
    # the source's name: Hyperband assigns each trial its bracket by a hash of the study name and trial number
    study = optuna.create_study(
        study_name=source.study_name, direction=source.direction, pruner=instantiate(config.pruner)
    )
    epochs, pruned = 0, 0
    for finished in trials:
        trial = study.ask()
        for step, value in sorted(finished.intermediate_values.items()):
            trial.report(value, step)
            epochs += 1
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                pruned += 1
                break
        else:
            study.tell(trial, finished.value)
    return {"trials": len(study.trials), "epochs": epochs, "pruned": pruned, "best": study.best_value}


def early_ranking(journal: Path, epochs: int = 12) -> pd.DataFrame:
    """How well each of the first `epochs` epochs foretells the finished trials' results: the rank
    correlation between the trials' reports at that epoch and their final values, and where the
    search's best trial ranks then. A pruner that judges at an epoch where its best trial ranks
    k-th keeps it only by letting k trials go on. A trial that stopped early counts with its last report."""
    study, trials = finished_trials(journal)
    reports = pd.DataFrame({trial.number: trial.intermediate_values for trial in trials}).sort_index().ffill()
    final = pd.Series({trial.number: trial.value for trial in trials})
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best = final.idxmax() if maximize else final.idxmin()
    early = reports.iloc[:epochs]
    return pd.DataFrame(
        {
            "epoch": early.index + 1,
            "rank correlation with the final value": early.corrwith(final, axis=1, method="spearman").to_numpy(),
            "the best trial's rank": early.rank(axis=1, method="min", ascending=not maximize)[best]
            .astype(int)
            .to_numpy(),
        }
    )


def print_table(results: dict[str, dict], title: str) -> None:
    """The pruners' figures, each against the first one's (the baseline); minutes where they trained."""
    baseline = next(iter(results.values()))
    timed = all("seconds" in result for result in results.values())
    print(f"\n{title}\n")
    header = "| pruner | epochs | share of epochs | pruned trials | best val MAE | against baseline |"
    print(header + " minutes |" * timed)
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * timed)
    for pruner, result in results.items():
        minutes = f" {result['seconds'] / 60:.1f} |" if timed else ""
        print(
            f"| {pruner} | {result['epochs']} | {result['epochs'] / baseline['epochs']:.0%} | {result['pruned']} "
            f"| {result['best']:.3f} | {result['best'] / baseline['best'] - 1:+.1%} |{minutes}"
        )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pruners", nargs="+", default=["none", "successive_halving", "hyperband"],
        choices=sorted(config.stem for config in PRUNER_CONFIGS.glob("*.yaml")),
        help="the pruners, the first the baseline (Hydra overrides go before --pruners: it takes every word after it)",
    )  # fmt: skip
    parser.add_argument("--trials", type=int, default=20, help="trials per search")
    parser.add_argument("--startup", type=int, default=10, help="random trials before TPE takes over")
    parser.add_argument("--epochs", type=int, default=20, help="most epochs a trial trains")
    parser.add_argument("--subjects", type=int, default=200, help="children in the demo data")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's and every trial's seed")
    parser.add_argument("--replay", type=Path, help="an unpruned search's journal: replay its trials, train nothing")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for every search")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_arguments()
    if args.replay:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study replayed
        results = {pruner: replay(args.replay, pruner, args.overrides) for pruner in args.pruners}
        print_table(results, f"the {results[args.pruners[0]]['trials']} finished trials of {args.replay}, replayed")
        print("\nhow each epoch ranks the trials against their final values\n")
        print(early_ranking(args.replay).to_markdown(index=False, floatfmt=("g", "+.2f", "g")))
        return
    root = Path("outputs") / "measure_pruning" / time.strftime("%Y-%m-%d_%H-%M-%S")
    results = {}
    for pruner in args.pruners:
        started = time.monotonic()
        run_search(pruner, root / pruner, args)
        results[pruner] = summarise(root / pruner) | {"seconds": time.monotonic() - started}
        print(f"{pruner}: {results[pruner]}", flush=True)
    print_table(results, f"{args.trials} trials of up to {args.epochs} epochs, seed {args.seed} ({root})")


if __name__ == "__main__":
    main()
