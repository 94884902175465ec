"""Training techniques: each one a config key away, and each shown to act as it claims."""

from __future__ import annotations

import copy
import re
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from boneage.callbacks import FreezeBackbone
from boneage.callbacks.averaging import ema_with_warmup
from boneage.config.errors import DataError
from boneage.evaluate import evaluate
from boneage.evaluation.inference import load_run
from boneage.modules.fused import fused_flag
from boneage.modules.model import ImageModel
from boneage.report import build_table
from boneage.tasks import AgeTask
from boneage.tasks.balance import balance_weights
from boneage.tasks.losses import MeanVarianceLoss
from boneage.train import train
from boneage.tune import valley
from tests.helpers import TINY, compose_app, record_of, run_cli


def mae(predicted: np.ndarray, ages: pd.Series) -> float:
    return float(np.abs(predicted - ages.to_numpy()).mean())


def train_with_config_saved(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """train(), plus the .hydra/config.yaml a CLI run leaves for evaluate and predict."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return train(cfg).metrics


@pytest.mark.slow
def test_ema_checkpoints_and_evaluates_the_averaged_weights(compose_train, tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_train([*TINY, "trainer.max_epochs=2", "averaging=ema", "callbacks.averaging.decay=0.9"])
    metrics = train_with_config_saved(cfg, run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    averaged, live = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert any(not torch.equal(averaged[name], live[name]) for name in averaged if name.startswith("backbone."))
    # The val MAE of the run is the averaged network's: evaluating the checkpoint reproduces it...
    run = load_run(run_dir)
    val_rows = pd.read_csv(run_dir / "splits.csv").query("set == 'val'")
    assert mae(run.predict(val_rows), val_rows["age"]) == pytest.approx(metrics["val/mae"], abs=1e-4)
    # ...and the live weights would have scored otherwise.
    run.module.load_state_dict(live)
    assert mae(run.predict(val_rows), val_rows["age"]) != pytest.approx(metrics["val/mae"], abs=1e-4)
    assert "ema 0.9" in record_of(run_dir)["techniques"]


@pytest.mark.slow
def test_swa_averages_the_epochs_from_its_start_at_its_own_lr(compose_train, tmp_path):
    overrides = ["averaging=swa", "callbacks.averaging.swa_epoch_start=1", "callbacks.averaging.swa_lr=1e-5"]
    train(compose_train([*TINY, "trainer.max_epochs=3", "callbacks.averaging.annealing_epochs=1", *overrides]))
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 2  # last.ckpt is the last epoch, whether or not it improved
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 2  # the ends of epochs 1 and 2
    history = record_of(tmp_path / "run")["history"]
    assert history[0]["lr"] > 1e-4 and history[2]["lr"] == pytest.approx(1e-5)


class WeightSnapshots(pl.Callback):
    """The backbone's weights and BN statistics before training and at the end of each epoch."""

    def __init__(self) -> None:
        self.backbone: list[dict[str, torch.Tensor]] = []
        self.head: list[torch.Tensor] = []

    def snapshot(self, module: ImageModel) -> None:
        self.backbone.append(copy.deepcopy(module.backbone.state_dict()))
        self.head.append(module.head[1].weight.detach().clone())

    def on_train_start(self, trainer, module):
        self.snapshot(module)

    def on_train_epoch_end(self, trainer, module):
        self.snapshot(module)


@pytest.mark.slow
def test_frozen_backbone_stays_unchanged_for_its_epochs_then_trains(compose_train):
    cfg = compose_train([*TINY, "training.freeze_backbone_epochs=1"])
    snapshots = WeightSnapshots()
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[FreezeBackbone(cfg.training.freeze_backbone_epochs), snapshots],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    task = instantiate(cfg.task)
    trainer.fit(instantiate(cfg.module, task=task), datamodule=instantiate(cfg.data, task=task))
    before, after_frozen, after_unfrozen = snapshots.backbone
    for name, value in before.items():  # weights and BN running statistics alike
        assert torch.equal(value, after_frozen[name]), name
    assert any(not torch.equal(after_frozen[name], after_unfrozen[name]) for name in before)
    assert not torch.equal(snapshots.head[0], snapshots.head[1])  # the head learned meanwhile


def test_backbone_and_head_get_their_own_learning_rates():
    optimizer = partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05)
    module = ImageModel("test_vit", AgeTask(), optimizer=optimizer, backbone_lr_scale=0.1)
    groups = {group["name"]: group["lr"] for group in module.configure_optimizers().param_groups}
    assert groups == {"head": pytest.approx(1e-3), "backbone": pytest.approx(1e-4)}

    layered = ImageModel("test_vit", AgeTask(), optimizer=optimizer, backbone_lr_scale=0.1, layer_decay=0.5)
    groups = layered.configure_optimizers().param_groups
    by_depth = sorted((g for g in groups if g["name"] != "head"), key=lambda g: int(g["name"].split(".")[1][5:]))
    lrs = [g["lr"] for g in by_depth]
    assert lrs == sorted(lrs) and lrs[-1] == pytest.approx(1e-4)  # deeper: closer to the backbone lr
    assert lrs[0] == pytest.approx(1e-4 * 0.5 ** (len(set(lrs)) - 1))  # each layer nearer the input halves it
    assert sum(len(g["params"]) for g in groups) == len(list(layered.parameters()))


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_balanced_sampler_draws_age_bins_at_the_configured_rate(compose_train, power):
    balance = ["data.balance.method=sampler", "data.balance.bin_width=4", f"data.balance.power={power}"]
    cfg = compose_train([*TINY, *balance])
    datamodule = instantiate(cfg.data, task=instantiate(cfg.task))
    datamodule.setup()
    ages = datamodule.rows("train")["age"].to_numpy()
    bins = np.floor((ages - ages.min()) / 4).astype(int)
    counts = np.bincount(bins)
    drawn = []
    sampler = datamodule.train_dataloader().sampler
    for epoch in range(60):
        sampler.set_epoch(epoch)
        drawn += [index for _, index in sampler]
    shares = np.bincount(bins[drawn], minlength=len(counts)) / len(drawn)
    expected = counts ** (1 - power) / (counts ** (1 - power)).sum()  # power 1: every bin alike
    np.testing.assert_allclose(shares, expected, atol=0.02)
    assert shares[counts.argmin()] > counts.min() / counts.sum()  # the rarest bin is drawn more than its share


def test_lds_weights_rare_ages_more_and_reach_the_loss(compose_train):
    ages = np.array([1.0] * 2 + [8.0] * 50 + [9.0] * 50 + [17.0] * 3)
    weights = balance_weights(ages, "lds", bin_width=1.0, power=1.0, kernel_sigma=1.0)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[0] > weights[10] and weights[-1] > weights[10]
    cfg = compose_train([*TINY, "data.balance.method=lds", "data.num_workers=0"])  # weights, not loading
    datamodule = instantiate(cfg.data, task=instantiate(cfg.task))
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert "weight" in batch and not torch.allclose(batch["weight"], torch.ones_like(batch["weight"]))
    losses = torch.tensor([1.0, 3.0])
    assert ImageModel._mean_loss(losses, torch.tensor([3.0, 1.0])) == pytest.approx(1.5)


def test_mixup_mixes_ages_by_the_same_lambda_as_images():
    module = ImageModel("test_resnet", AgeTask(), mixup_alpha=0.4, extra_inputs=["sex"])
    torch.manual_seed(3)
    batch = {"image": torch.rand(8, 3, 8, 8), "age": torch.arange(8.0), "inputs": torch.rand(8, 1)}
    mixed = module.mixup(batch)
    # Recover each image's partner and lambda from its pixels, then check its age and inputs.
    for i in range(8):
        if torch.equal(mixed["image"][i], batch["image"][i]):  # paired with itself: nothing to mix
            assert mixed["age"][i] == i
            continue
        for j in set(range(8)) - {i}:
            difference = batch["image"][i] - batch["image"][j]
            lam = float(((mixed["image"][i] - batch["image"][j]) * difference).sum() / (difference**2).sum())
            if torch.allclose(mixed["image"][i], lam * batch["image"][i] + (1 - lam) * batch["image"][j], atol=1e-5):
                assert mixed["age"][i] == pytest.approx(lam * i + (1 - lam) * j, abs=1e-4)
                assert mixed["inputs"][i] == pytest.approx(lam * batch["inputs"][i] + (1 - lam) * batch["inputs"][j])
                break
        else:
            pytest.fail(f"image {i} is not a blend of two images")


def test_mean_variance_soft_labels_have_the_target_as_their_mean():
    loss = MeanVarianceLoss(bins=21, span=2.0)
    targets = torch.tensor([-2.0, -0.33, 0.0, 1.77, 2.0])
    assert torch.allclose(loss.soft_labels(targets) @ loss.centres, targets, atol=1e-5)


@pytest.mark.slow
def test_mean_variance_loss_learns_to_beat_the_mean_predictor_and_scales_its_intervals(compose_train, tmp_path):
    metrics = train_with_config_saved(
        compose_train([*TINY, "loss=mean_variance", "trainer.max_epochs=4"]), tmp_path / "run"
    )
    record = record_of(tmp_path / "run")
    losses = [row["train/loss"] for row in record["history"]]
    assert losses[-1] < losses[0]
    assert metrics["val/mae"] < record["data"]["mean_predictor_mae"]["val"]

    run = load_run(tmp_path / "run")
    spreads = run.spread(run.test_rows, "age")  # its own deviation, in years
    assert (spreads > 0).all() and spreads.std() > 0
    overrides = [
        f"run={tmp_path / 'run'}",
        "intervals_scale=distribution",
        "heatmaps=false",
        f"output_dir={tmp_path / 'e'}",
    ]
    predictions = pd.read_csv(evaluate(compose_app("evaluate", overrides)) / "predictions.csv")
    widths = predictions["upper_90"] - predictions["lower_90"]
    assert np.corrcoef(widths, spreads)[0, 1] > 0.99  # each image's interval is as wide as the model is unsure


@pytest.mark.slow
def test_sex_as_input_changes_the_prediction_and_predict_needs_it(compose_train, tmp_path):
    train_with_config_saved(compose_train([*TINY, "data.extra_inputs=[sex]", "trainer.max_epochs=2"]), tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert run.module.hparams.extra_inputs == ["sex"]
    rows = pd.read_csv(tmp_path / "run" / "splits.csv").query("set == 'test'").head(8)
    as_girls, as_boys = run.predict(rows.assign(sex="F")), run.predict(rows.assign(sex="male"))
    assert np.abs(as_girls - as_boys).min() > 1e-4
    with pytest.raises(DataError, match=r"column 'sex'.*give a table"):
        run.predict(rows.drop(columns="sex"))


def test_an_input_column_the_table_lacks_is_named_before_training(compose_train, tmp_path):
    with pytest.raises(
        DataError, match=r"data.extra_inputs names column 'age_months'.*its columns are: image, age, subject, sex"
    ):
        train(compose_train([*TINY, "data.extra_inputs=[age_months]"]))


@pytest.mark.slow  # torch.compile builds its C++ kernels: about 20 s
def test_compile_channels_last_and_checkpointing_keep_the_results():
    torch.manual_seed(0)
    plain = ImageModel("test_resnet", AgeTask()).eval()
    images = torch.randint(256, (4, 1, 32, 32), dtype=torch.uint8)
    expected = plain(images)
    for options in ({"compile": True}, {"channels_last": True}, {"grad_checkpointing": True}):
        variant = ImageModel("test_resnet", AgeTask(), **options)
        variant.load_state_dict(plain.state_dict())
        with torch.no_grad():
            assert torch.allclose(variant.eval()(images), expected, atol=1e-4), options


@pytest.mark.slow
def test_techniques_are_recorded_and_shown_in_the_report(compose_train, tmp_path):
    techniques = ["training.mixup_alpha=0.2", "training.backbone_lr_scale=0.5", "data.balance.method=lds"]
    train(compose_train([*TINY, *techniques]))
    assert record_of(tmp_path / "run")["techniques"] == ["backbone lr x0.5", "mixup 0.2", "balance lds"]
    assert build_table([tmp_path]).loc[1, "techniques"] == "backbone lr x0.5, mixup 0.2, balance lds"


def test_valley_suggests_an_lr_on_the_long_descent_not_on_an_early_bump():
    lrs = np.logspace(-7, 0, 100)
    log_lr = np.log10(lrs)
    # The curve: a hump near 4e-6, a long fall to a minimum near 1e-2, then divergence.
    losses = (
        0.5 + 0.4 * np.exp(-(((log_lr + 5.4) / 0.4) ** 2)) - 0.4 / (1 + np.exp(-2.5 * (log_lr + 4))) * (log_lr < -2)
    )
    losses = np.where(log_lr >= -2, losses.min() + (log_lr + 2) ** 2, losses)
    suggestion = valley(lrs.tolist(), losses.tolist())
    assert 1e-4 <= suggestion < 1e-2  # on the fall, short of the minimum; far from the bump at 4e-6


@pytest.mark.slow
def test_lr_finder_suggests_within_a_decade_of_an_lr_that_trains_the_demo(tmp_path, data_dir):
    """The demo trains well at optimizer.lr=3e-3 (experiment=demo)."""
    args = [*TINY, "find=lr", "data.source.n_subjects=150", f"hydra.run.dir={tmp_path}"]
    result = run_cli(args, tmp_path, data_dir, app="boneage.tune")
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r"Suggested learning rate: ([\d.e+-]+)\.", result.stdout)
    assert found, result.stdout[-2000:]
    suggested = float(found.group(1))
    assert 3e-4 <= suggested <= 3e-2, suggested
    assert (tmp_path / "lr_finder.png").is_file()


@pytest.mark.slow
def test_batch_size_finder_prints_the_largest_batch_that_fitted(tmp_path, data_dir):
    args = [*TINY, "find=batch_size", "batch_size_find.max_trials=3", f"hydra.run.dir={tmp_path}"]
    result = run_cli(args, tmp_path, data_dir, app="boneage.tune")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Largest batch size that fitted: 8." in result.stdout  # 2, 4, 8: three trials, all fit on CPU


def test_ema_weight_follows_the_network_early_and_reaches_its_decay_later():
    update = ema_with_warmup(decay=0.999, warmup=10)
    average, current = torch.zeros(1), torch.ones(1)
    first = update(average, current, torch.tensor(1))  # weight of the old average: 2/11
    assert first.item() == pytest.approx(1 - 2 / 11)
    late = update(average, current, torch.tensor(100_000))
    assert late.item() == pytest.approx(1 - 0.999, rel=1e-4)
    fixed = ema_with_warmup(decay=0.999, warmup=None)
    assert fixed(average, current, torch.tensor(1)).item() == pytest.approx(1 - 0.999, rel=1e-4)


@pytest.mark.slow
def test_ema_of_a_short_run_is_a_real_average_not_the_initial_weights(compose_train, tmp_path):
    """Two demo epochs at the default decay (0.999): without warmup the average is still mostly the
    random initial network, and scores like the mean predictor."""
    metrics = train(compose_train([*TINY, "trainer.max_epochs=3", "averaging=ema"])).metrics
    mean_predictor = record_of(tmp_path / "run")["data"]["mean_predictor_mae"]["val"]
    assert metrics["val/mae"] < 0.8 * mean_predictor


def test_layer_decay_of_one_gives_every_parameter_one_lr_in_uniquely_named_groups():
    optimizer = partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05)
    module = ImageModel("test_vit", AgeTask(), optimizer=optimizer, layer_decay=1.0)
    groups = module.configure_optimizers().param_groups
    names = [group["name"] for group in groups]
    assert len(names) == len(set(names))
    assert [group["lr"] for group in groups] == pytest.approx([1e-3] * len(groups))
    assert sum(len(g["params"]) for g in groups) == len(list(module.parameters()))


@pytest.mark.parametrize(
    ("optimizer", "precision", "clip", "fused"),
    [
        (partial(torch.optim.AdamW, lr=1e-3), "32-true", 1.0, True),  # full precision: Lightning clips, then the step
        (partial(torch.optim.AdamW, lr=1e-3), "16-mixed", None, True),  # no clipping: the scaler hands over
        (partial(torch.optim.AdamW, lr=1e-3), "16-mixed", 1.0, False),  # Lightning refuses to clip a fused step
        (partial(torch.optim.SGD, lr=1e-3), "bf16-mixed", 0.5, False),  # bf16 alike, though it has no scaler
        (partial(torch.optim.AdamW, lr=1e-3, fused=False), "32-true", None, False),  # the user's own setting stays
        (partial(torch.optim.RMSprop, lr=1e-3), "32-true", None, False),  # no fused kernel to ask for
    ],
)
def test_the_gpu_optimizer_is_fused_only_where_lightning_can_clip_its_gradients(optimizer, precision, clip, fused):
    assert fused_flag(optimizer, True, precision, clip) == ({"fused": True} if fused else {})
    assert fused_flag(optimizer, False, precision, clip) == {}  # training.fused_optimizer=false
