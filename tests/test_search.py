"""The Optuna search's parts that need no training: its space, its storage, a killed search's
trials, the Pareto front of a multi-objective search, and the replay of a search's trials
through the pruners."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from boneage.config.errors import ConfigError
from boneage.report import main as report_main
from boneage.runs.objectives import objective_values
from boneage.runs.pareto import pareto_front
from boneage.search.space import SearchSpace
from boneage.search.storage import open_storage
from boneage.search.sweeper import finish_stale_trials
from boneage.serving.load_test import free_port, wait_until_answering
from tests.browser import headless_chromium, needs_chromium, screenshot
from tests.helpers import ROOT


def test_the_hydra_sweep_syntax_becomes_optuna_distributions_and_the_command_line_wins():
    space = SearchSpace.from_overrides([
        "optimizer.lr=tag(log, interval(1e-5, 1e-3))", "model.dropout=interval(0.0, 0.7)",
        "data.batch_size=range(16, 64, 16)", "loss=choice(mae, huber)", "model.dropout=0.3", "seed=7",
    ])  # fmt: skip
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-5, 1e-3, log=True),
        "data.batch_size": IntDistribution(16, 48, step=16),
        "loss": CategoricalDistribution(["mae", "huber"]),
    }
    assert space.fixed == {"model.dropout": "0.3", "seed": "7"}  # the later, fixed value replaced the range
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask(space.distributions)
    overrides = space.overrides(trial)
    assert overrides[-2:] == ["model.dropout=0.3", "seed=7"]
    assert {override.split("=")[0] for override in overrides[:-2]} == set(space.distributions)


def test_a_glob_sweep_is_refused_with_the_forms_a_search_takes():
    with pytest.raises(ConfigError, match=r"choice\(...\), range\(...\) or interval\(...\)"):
        SearchSpace.from_overrides(["model=glob(*)"])


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("storage", ["optuna.journal", "sqlite:///{tmp}/optuna.db"])
def test_trials_a_killed_search_left_running_end_as_their_run_records_say(tmp_path, storage):
    """A search killed mid-trial leaves RUNNING trials; the next search finishes the one whose job
    had finished, marks the pruned one pruned and fails the one that never ended."""
    spec = storage.format(tmp=tmp_path) if "://" in storage else str(tmp_path / storage)
    study = optuna.create_study(study_name="s", storage=open_storage(spec))
    gone = {"host": __import__("socket").gethostname(), "pid": _dead_pid()}
    for number, status in enumerate(["finished", "pruned", "running"]):
        trial = study.ask()
        run_dir = tmp_path / str(number)
        run_dir.mkdir()
        (run_dir / "run.json").write_text(json.dumps({"status": status, "metrics": {"val/mae": 1.5}}))
        trial.set_user_attr("sweeper", gone)
        trial.set_user_attr("run_dir", str(run_dir))
    alive = study.ask()  # this process's own running trial is left alone
    alive.set_user_attr("sweeper", gone | {"pid": __import__("os").getpid()})

    finish_stale_trials(optuna.load_study(study_name="s", storage=open_storage(spec)), "val/mae")
    trials = optuna.load_study(study_name="s", storage=open_storage(spec)).trials
    assert [trial.state for trial in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                                 TrialState.RUNNING]  # fmt: skip
    assert trials[0].value == 1.5


def test_the_report_shows_a_two_objective_searchs_pareto_front(tmp_path, capsys):
    trials = [(1.2, 9.0), (1.1, 12.0), (1.3, 10.0), (1.0, 30.0)]  # the third is beaten by the first on both
    for job, (mae, ms) in enumerate(trials):
        record = {
            "status": "finished", "metrics": {"val/mae": mae}, "speed": {"inference_ms_per_image": ms},
            "config": {"model": {"name": "resnet50", "dropout": 0.1 * job}},
            "search": {"objectives": ["val/mae", "inference_ms_per_image"], "directions": ["minimize", "minimize"]},
        }  # fmt: skip
        (tmp_path / "search" / str(job)).mkdir(parents=True)
        (tmp_path / "search" / str(job) / "run.json").write_text(json.dumps(record))
    pruned = {"status": "pruned", "pruned": {"epoch": 1, "value": 0.9}, "best": {"val/mae": 0.9, "epoch": 1}}
    (tmp_path / "search" / "4").mkdir()
    (tmp_path / "search" / "4" / "run.json").write_text(json.dumps(pruned))
    report_main([str(tmp_path / "search")])
    printed = capsys.readouterr().out
    assert "pruned: search/4: pruned at epoch 1" in printed
    table = pd.read_csv(tmp_path / "search" / "report.csv")
    assert table["status"].tolist()[-1] == "pruned"  # ranked after the finished ones, though its MAE is lower
    assert "inference_ms_per_image" not in table  # the speed objective is the inference_ms column
    report = (tmp_path / "search" / "report.md").read_text()
    front = report.split("## Pareto front")[1]
    assert "search/3" in front and "search/1" in front and "search/0" in front and "search/2" not in front
    assert (tmp_path / "search" / "pareto_front.png").is_file()


def test_a_pareto_front_follows_each_objectives_direction():
    table = pd.DataFrame({"run": ["a", "b", "c"], "status": "finished", "acc": [0.9, 0.8, 0.7], "ms": [5.0, 4.0, 6.0]})
    front = pareto_front(table, {"acc": "maximize", "ms": "minimize"})
    assert front["run"].tolist() == ["a", "b"]


def measure_pruning_script():
    """scripts/measure_pruning.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("measure_pruning", ROOT / "scripts" / "measure_pruning.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def unpruned_search(folder: Path, study_name: str) -> Path:
    """The journal of three finished trials of four epochs, in `folder`. The second trial is slow at
    first and the best at the end."""
    journal = folder / "optuna.journal"
    study = optuna.create_study(study_name=study_name, storage=open_storage(str(journal)))
    for curve in ([3.0, 2.0, 1.8, 1.7], [3.5, 2.6, 1.5, 1.2], [2.9, 2.5, 2.4, 2.3]):  # best so far, per epoch
        trial = study.ask()
        for epoch, value in enumerate(curve):
            trial.report(value, epoch)
        study.tell(trial, curve[-1])
    return journal


def test_a_replay_feeds_an_unpruned_searchs_trials_to_each_pruner_and_counts_what_it_keeps(tmp_path):
    """`make measure-pruning ARGS="--replay <journal>"`: the shipped pruner configs judge the same
    trials. Successive halving, comparing after epoch 1, prunes the late best there and keeps the first."""
    script = measure_pruning_script()
    journal = unpruned_search(tmp_path, script.STUDY)
    unpruned = script.replay(journal, "none", [])
    assert (unpruned["epochs"], unpruned["pruned"], unpruned["best"]) == (12, 0, 1.2)
    halving = script.replay(journal, "successive_halving", ["search.pruner.min_resource=1", "test=false"])
    assert (halving["epochs"], halving["pruned"], halving["best"]) == (8, 2, 1.7)  # the third: pruned at epoch 1 too


def test_a_replay_shows_how_each_epoch_ranks_the_trials_against_their_final_values(tmp_path):
    """The replay's second table: after one epoch the three trials stand in the reverse of their
    final order (the best third); after the fourth, in it."""
    script = measure_pruning_script()
    ranking = script.early_ranking(unpruned_search(tmp_path, script.STUDY)).set_index("epoch")
    assert ranking.index.tolist() == [1, 2, 3, 4]
    assert ranking.loc[1].tolist() == pytest.approx([-1.0, 3])  # rank correlation, the best trial's rank
    assert ranking.loc[4].tolist() == pytest.approx([1.0, 1])


def test_measure_pruning_refuses_a_hydra_override_after_pruners_naming_the_pruners_it_knows(capsys):
    """--pruners takes every word after it: an override written there is named, not looked up as a pruner."""
    script = measure_pruning_script()
    with pytest.raises(SystemExit):
        script.parse_arguments(["--pruners", "none", "successive_halving", "search.pruner.min_resource=2"])
    refusal = capsys.readouterr().err
    assert "invalid choice: 'search.pruner.min_resource=2'" in refusal and "'successive_halving'" in refusal
    arguments = script.parse_arguments(["search.pruner.min_resource=2", "--pruners", "none", "successive_halving"])
    assert arguments.pruners == ["none", "successive_halving"]
    assert arguments.overrides == ["search.pruner.min_resource=2"]


def test_an_objective_is_read_from_the_metrics_before_the_speeds_and_a_missing_one_is_none():
    metrics, speed = {"val/mae": 1.2, "shared": 1.0}, {"inference_ms_per_image": 3.0, "shared": 9.0}
    assert objective_values("val/mae", metrics, speed) == 1.2
    assert objective_values(["val/mae", "inference_ms_per_image"], metrics, speed) == [1.2, 3.0]
    assert objective_values(["shared"], metrics, speed) == [1.0]
    assert objective_values(["val/mae", "val/rmse"], metrics, speed) is None  # the trial failed


@pytest.mark.slow
@needs_chromium
def test_optuna_dashboard_shows_a_searchs_trials_with_their_epochs_in_a_browser(tmp_path):
    """The README's command, `optuna-dashboard multirun/<task_name>/optuna.journal`, on a journal
    as a search leaves it, looked at in headless Chromium."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    journal = tmp_path / "multirun" / "demo" / "optuna.journal"
    storage = open_storage(str(journal))
    study = optuna.create_study(study_name="demo", storage=storage)
    space = {"optimizer.lr": FloatDistribution(1e-5, 1e-3, log=True), "loss": CategoricalDistribution(["mae", "mse"])}
    for curve in ([4.0, 2.5, 1.9], [7.5], [3.8, 2.2, 1.6]):  # val MAE per epoch; the second trial pruned
        trial = study.ask(space)
        for epoch, value in enumerate(curve):
            trial.report(value, epoch)
        study.tell(trial, curve[-1] if len(curve) > 1 else None, state=None if len(curve) > 1 else TrialState.PRUNED)
    port = free_port()
    dashboard = subprocess.Popen(
        [Path(sys.executable).parent / "optuna-dashboard", str(journal), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/api/studies", dashboard, timeout_s=60)
        with headless_chromium() as browser:
            browser.get(f"{url}/dashboard/studies/{storage.get_study_id_from_name('demo')}/trials")
            body = (By.TAG_NAME, "body")
            WebDriverWait(browser, 30).until(expected_conditions.text_to_be_present_in_element(body, "3 Trials"))
            page = browser.find_element(*body).text
            screenshot(browser, "optuna_dashboard_trials")
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
    assert all(f"Trial {number}" in page for number in range(3))
    assert "Pruned" in page and "Best Trial" in page
    assert "Intermediate Values" in page and "0 4\n1 2.5\n2 1.9" in page  # the first trial's epochs
