"""`python -m boneage.serve run=<run>`: a REST API and a web page for a trained run or ensemble.

Offline and local by default (127.0.0.1): POST /predict, POST /predict/batch, GET /health,
GET /model, the OpenAPI spec at /openapi.json, and the page at / (drop an image, read its age).
"""

from __future__ import annotations

import uvicorn
from omegaconf import DictConfig

from boneage.config.cli import hydra_command
from boneage.evaluation.ensemble import load_members, plain, require_age_task
from boneage.evaluation.ood import ood_of
from boneage.evaluation.trust import trust_for
from boneage.serving.app import create_app
from boneage.serving.model import ServedModel


def build_app(cfg: DictConfig):
    """The app for the run or ensemble of `cfg`, with its limits and batching."""
    members = load_members(cfg.run, plain(cfg.ensemble), cfg.sweep)
    require_age_task(members, "serve")
    tta, weights = plain(cfg.tta), plain(cfg.weights)
    trust = trust_for(members, cfg, tta, weights, bool(cfg.interval))
    model = ServedModel(members, tta, weights, trust, cfg.interval, ood_of(members, cfg.ood_quantile))
    return create_app(model, cfg.max_upload_mb, cfg.max_batch, cfg.max_wait_ms, cfg.max_batch_files)


@hydra_command("serve")
def main(cfg: DictConfig) -> None:
    app = build_app(cfg)
    print(f"boneage serves on http://{cfg.host}:{cfg.port}/ (the page), /docs (the API); Ctrl-C stops it", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)


if __name__ == "__main__":
    main()
