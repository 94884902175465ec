"""`python -m boneage.bench [bench=quick]` (`make bench`): speed, measured.

1. Loader throughput (images/s) at the bench size with CLAHE and the default augmentations:
   without and with the preprocessing cache, in the training process and with workers.
2. Framework overhead: a boneage training epoch against a plain PyTorch loop written here,
   with the same network, data loader, optimizer, precision and batch size, epochs in turn; 2b. the same for a
   classifier (EfficientNet-B0) on a generated set of the users' 44-class shape.
3. Model comparison: every model config at its native size, on the device at hand.
4. Time from the command to the first training step of the demo.
5. Serving: latency and throughput of POST /predict.
6. The DICOM node: seconds per image from received to its structured report stored.
Prints each as a table, checks the targets, and writes everything to bench.json.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import operator
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from boneage.config.build import build, build_data_and_module, build_trainer
from boneage.config.cli import hydra_command
from boneage.config.resolvers import register_resolvers
from boneage.pacs.load_test import node_load_test
from boneage.runs.records import RunRecord, environment
from boneage.runtime.speed import synchronize
from boneage.serving.load_test import load_test, served

COMPARE = {">=": operator.ge, "<=": operator.le}


def bench(cfg: DictConfig) -> dict[str, Any]:
    """Every measurement, the targets checked, written to `<run dir>/bench.json`."""
    settings = cfg.bench
    pl.seed_everything(cfg.seed)
    results: dict[str, Any] = {"mode": settings.mode, "environment": environment()}
    results["loader"] = measure_loader(cfg)
    _print_table("1. Loader throughput (images/s)", results["loader"])
    results["overhead"] = measure_overhead(cfg, settings.overhead_epochs)
    _print_table("2. Framework overhead (one training epoch)", [results["overhead"]])
    results["classification"] = measure_classification(settings, Path(cfg.paths.output_dir), cfg.paths.root_dir)
    _print_table("2b. Framework overhead, classification (the 44-class shape)", [results["classification"]])
    results["models"] = compare_models(list(settings.models), settings)
    _print_table("3. Models", results["models"])
    results["first_step"] = time_to_first_step(list(settings.first_step_overrides), Path(cfg.paths.output_dir))
    _print_table("4. Time to the first training step", [results["first_step"]])
    results["serving"] = measure_serving(Path(cfg.paths.output_dir) / "first_step_run", settings)
    _print_table("5. Serving: POST /predict on 127.0.0.1 (the run trained in 4.)", [results["serving"]])
    results["pacs"] = node_load_test(Path(cfg.paths.output_dir) / "first_step_run", settings.pacs_images,
                                     Path(cfg.paths.output_dir))  # fmt: skip
    _print_table("6. DICOM node: C-STORE in, structured report stored (the run trained in 4.)", [results["pacs"]])
    results["targets"] = check_targets(results)
    _print_table("Targets", results["targets"])
    output = Path(cfg.paths.output_dir) / "bench.json"
    output.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nWritten to {output}")
    return results


def measure_loader(cfg: DictConfig) -> list[dict[str, Any]]:
    """Train-loader images/s: cold (decode + CLAHE + resize each time) and cached, in the
    training process and with workers, at the bench size; cached through one worker (what
    handing batches between processes costs); then cached in the training process (one core)
    at each of `bench.loader_sizes`: images/s per loader core, the figure that says how many
    cores a GPU needs to be kept fed. The repeats take the settings in turn, so that a machine
    whose speed drifts over the minutes of the measurement (a shared one does) slows every
    setting alike rather than the ones timed last."""
    bench_size = cfg.data.image_size
    settings = [(cache, workers, bench_size) for cache in (False, True) for workers in (0, cfg.data.num_workers)]
    settings += [(True, 1, bench_size)] if cfg.data.num_workers != 1 else []
    settings += [(True, 0, size) for size in cfg.bench.loader_sizes if size != bench_size]
    loaders = [_train_loader(cfg, cache, workers, size) for cache, workers, size in settings]
    rates = [[] for _ in settings]
    for _ in range(cfg.bench.loader_repeats):
        for loader, setting_rates in zip(loaders, rates, strict=True):
            setting_rates.append(_images_per_second(loader, cfg.bench.loader_seconds))
    return [
        loader_row(cache, workers, size, cfg.data.clahe, setting_rates)
        for (cache, workers, size), setting_rates in zip(settings, rates, strict=True)
    ]


def loader_row(cache: bool, workers: int, size: int, clahe: bool, rates: list[float]) -> dict[str, Any]:
    """One loader setting's figures: the median of its repeats, and their spread at the median's
    precision (rounding both alike keeps the median inside the spread printed beside it)."""
    median = statistics.median(rates)
    return {
        "pipeline": "cached" if cache else "cold",
        "workers": workers,
        "image_size": size,
        "clahe": clahe,
        "images_per_s": round(median, 1),
        "spread": f"{min(rates):.1f}-{max(rates):.1f}",
        "images_per_s_per_core": round(median / max(1, workers), 1),
    }


def _train_loader(cfg: DictConfig, cache: bool, workers: int, size: int) -> Any:
    """The training loader of the bench's data at `size`, its cache entry built (not timed)."""
    datamodule = build(
        cfg.data,
        task=build(cfg.task),
        cache=cache,
        image_size=size,
        num_workers=workers,
        batch_size=cfg.bench.loader_batch_size,
        persistent_workers=workers > 0,
    )
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule.train_dataloader()


def _images_per_second(loader: Any, seconds: float) -> float:
    """Throughput over at least `seconds` of whole batches, epoch after epoch, after a first
    batch that starts the workers (worker start-up is time to first step's business)."""
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    next(batches)
    started, images = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        images += len(next(batches)["image"])
    return images / (time.perf_counter() - started)


class EpochTimer(pl.Callback):
    """Seconds of each training epoch, from its start to the end of its last step (the
    validation that follows is not part of the comparison)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._last_step_ended = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(self._last_step_ended - self._started)


def measure_overhead(cfg: DictConfig, epochs: int) -> dict[str, Any]:
    """boneage's epoch time / a plain loop's, each its fastest epoch after the first (warm-up)."""
    datamodule, module = build_data_and_module(cfg)
    timer = EpochTimer()
    plain = PlainLoopInTurn(build(cfg.module, task=datamodule.task), cfg)
    trainer = build_trainer(cfg, [timer, plain], max_epochs=epochs)
    trainer.fit(module, datamodule=datamodule)
    boneage_s, plain_s = min(timer.seconds[1:]), min(plain.seconds[1:])
    images = len(datamodule.rows("train")) // cfg.data.batch_size * cfg.data.batch_size
    return {
        "model": cfg.model.name,
        "image_size": cfg.data.image_size,
        "batch_size": cfg.data.batch_size,
        "precision": cfg.trainer.precision,
        "device": str(trainer.strategy.root_device),
        "boneage_epoch_s": round(boneage_s, 3),
        "plain_epoch_s": round(plain_s, 3),
        "ratio": round(boneage_s / plain_s, 3),
        "training_images_per_s": round(images / boneage_s, 1),
    }


class PlainLoopInTurn(pl.Callback):
    """The same training written as a bare PyTorch loop (forward, the head's own loss, backward,
    gradient clipping, AdamW step, per-batch lr schedule), one epoch of it after each boneage
    training epoch. The two take turns, so that a machine whose speed drifts over the measurement
    (a shared one does) slows both alike."""

    def __init__(self, module: torch.nn.Module, cfg: DictConfig) -> None:
        use_cuda = torch.cuda.is_available() and cfg.trainer.accelerator != "cpu"
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.model = module.to(self.device).train()
        self.optimizer = torch.optim.AdamW(
            module.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=1000)
        self.autocast = _autocast(str(cfg.trainer.precision), self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=str(cfg.trainer.precision) == "16-mixed")
        self.clip = cfg.trainer.gradient_clip_val or float("inf")
        self.seconds: list[float] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.loader = trainer.datamodule.train_dataloader()  # one loader for all epochs, as Lightning keeps its workers

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(self.epoch(trainer.current_epoch))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Its workers end with it: kept, they held the measuring process open at exit."""
        del self.loader

    def epoch(self, epoch: int) -> float:
        """Seconds of one epoch of the plain loop."""
        (name,) = self.model.task.names
        head = self.model.task.heads[name]
        self.loader.sampler.set_epoch(epoch)
        started = time.perf_counter()
        for batch in self.loader:
            images, targets = batch["image"].to(self.device), batch[name].to(self.device)
            with self.autocast:
                loss = head.losses(self.model.head(self.model.features(images)), targets)[0].mean()
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
        synchronize(self.device)
        return time.perf_counter() - started


def _autocast(precision: str, device: torch.device) -> torch.autocast:
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def measure_classification(settings: DictConfig, out_dir: Path, root_dir: str) -> dict[str, Any]:
    """The overhead measurement for task=classify on the generated 44-class set
    (bench.classification_overrides), in a fresh process that composes its own config."""
    overrides = [*settings.classification_overrides, f"paths.root_dir={root_dir}",
                 f"paths.output_dir={out_dir / 'classification'}"]  # fmt: skip
    spawn = multiprocessing.get_context("spawn")  # not a Pool: its daemonic process may not start loader workers
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as executor:
        return executor.submit(_measure_classification, overrides, settings.overhead_epochs).result()


def _measure_classification(overrides: list[str], epochs: int) -> dict[str, Any]:
    from hydra import compose, initialize_config_module

    register_resolvers()
    with initialize_config_module(config_module="boneage.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return {"classes": cfg.data.source.classes} | measure_overhead(cfg, epochs)


def compare_models(models: list[str], settings: DictConfig) -> list[dict[str, Any]]:
    """Each model measured in a fresh process, so that its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for name in models:
        print(f"measuring {name} ...", flush=True)
        with context.Pool(1) as pool:
            rows.append(pool.apply(_measure_model, (name, OmegaConf.to_container(settings))))
    return rows


def _measure_model(option: str, settings: dict[str, Any]) -> dict[str, Any]:
    from hydra import compose, initialize_config_module

    register_resolvers()
    with initialize_config_module(config_module="boneage.conf", version_base="1.3"):
        overrides = [f"model={option}", "model.pretrained=false", *settings["model_overrides"]]
        cfg = compose("train", overrides=overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rss_before = _memory_mb("VmRSS")
    module = build(cfg.module, task=build(cfg.task)).to(device)
    size, batch = cfg.data.image_size, settings["model_batch"]
    images = torch.randint(256, (batch, 1, size, size), dtype=torch.uint8, device=device)
    ages = torch.rand(batch, device=device)
    with FlopCounterMode(display=False) as flops:
        module.eval()(images[:1])
    optimizer = torch.optim.AdamW(module.parameters())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def train_step() -> None:
        loss = torch.nn.functional.l1_loss(module.head(module.features(images)).squeeze(1), ages)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        with torch.inference_mode():
            module(images)

    train_rate = _rate(module.train(), train_step, batch, settings["model_steps"], device)
    infer_rate = _rate(module.eval(), infer_step, batch, settings["model_steps"], device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    peak = peak / 2**20 if peak is not None else _memory_mb("VmHWM") - rss_before
    return {
        "model": option,
        "timm_name": cfg.model.name,
        "image_size": size,
        "parameters_m": round(sum(p.numel() for p in module.parameters()) / 1e6, 2),
        "gflops": round(flops.get_total_flops() / 2 / 1e9, 3),  # multiply-adds, as model cards count them
        "train_images_per_s": round(train_rate, 2),
        "infer_images_per_s": round(infer_rate, 2),
        "peak_memory_mb": round(peak, 1),
        "memory_kind": "CUDA allocated" if device.type == "cuda" else "process RSS growth",
        "batch": batch,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }


def _rate(module: torch.nn.Module, step: Any, batch: int, steps: int, device: torch.device) -> float:
    step()  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return batch * steps / (time.perf_counter() - started)


def _memory_mb(field: str) -> float:
    """VmRSS (resident now) or VmHWM (resident at peak) of this process, from Linux's /proc.

    The peak is the process's own: unlike getrusage's ru_maxrss, it is not inherited from
    the parent that spawned this measuring process.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def time_to_first_step(overrides: list[str], out_dir: Path) -> dict[str, Any]:
    """Seconds from launching `python -m boneage.train` to its first training step."""
    run_dir = out_dir / "first_step_run"
    launched = time.time()
    subprocess.run(
        [sys.executable, "-m", "boneage.train", *overrides, f"hydra.run.dir={run_dir}"],
        check=True,
        capture_output=True,
    )
    first_step = RunRecord(run_dir).read()["first_step_at"]
    return {
        "command": "python -m boneage.train " + " ".join(overrides),
        "seconds": round(datetime.fromisoformat(first_step).timestamp() - launched, 2),
    }


def measure_serving(run_dir: Path, settings: DictConfig) -> dict[str, Any]:
    """p50/p95 latency of `serve_requests` requests from `serve_concurrency` clients, one demo image each."""
    image = Path(pd.read_csv(run_dir / "splits.csv")["image"].iloc[0]).read_bytes()  # a demo radiograph
    with served([f"run={run_dir}"], run_dir.parent) as server:
        return load_test(server.url, image, requests=settings.serve_requests, concurrency=settings.serve_concurrency)


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed targets, each with its measured value and whether it is met."""
    loader = pd.DataFrame(results["loader"])
    loader = loader[loader["image_size"] == results["overhead"]["image_size"]]  # the bench size, not the per-core sizes
    default_workers = loader["workers"].max()
    rate = loader.set_index(["pipeline", "workers"])["images_per_s"]
    cached_speedup = rate["cached", default_workers] / rate["cold", default_workers]
    feed = rate["cached", default_workers] / results["overhead"]["training_images_per_s"]
    handover = rate["cached", 1] / rate["cached", 0]
    checks = [
        ("cached loader / cold loader", cached_speedup, ">=", 3.0),
        ("cached loader: one worker / in the training process", handover, ">=", 0.9),
        ("boneage epoch / plain PyTorch epoch", results["overhead"]["ratio"], "<=", 1.05),
        ("classification: boneage epoch / plain PyTorch epoch", results["classification"]["ratio"], "<=", 1.05),
        ("cached loader / training throughput", feed, ">=", 1.0),
        ("DICOM node: seconds per image, received to report stored", results["pacs"]["seconds_per_image"], "<=", 2.0),
    ]
    return [
        {"target": name, "measured": round(value, 3), "goal": f"{sign} {goal}", "met": bool(COMPARE[sign](value, goal))}
        for name, value, sign, goal in checks
    ]


def _print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}\n{pd.DataFrame(rows).to_string(index=False)}", flush=True)


@hydra_command("bench")
def main(cfg: DictConfig) -> None:
    bench(cfg)


if __name__ == "__main__":
    main()
