"""Optional metric sinks next to metrics.jsonl: TensorBoard and Weights & Biases (rank 0 only).

Both are off by default (`run.tensorboard`, `run.wandb`) and imported only when switched on; a
missing package stops the run at start-up with the install command instead of failing later.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

_HINT = "pip install '{pkg}' (or pip install 'fastdapo[tracking]')"


def _numeric(metrics: dict) -> dict:
    return {
        k: float(v)
        for k, v in metrics.items()
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class TensorBoardSink:
    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RuntimeError(
                "run.tensorboard=true needs the tensorboard package: " + _HINT.format(pkg="tensorboard")
            ) from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def metrics(self, step: int, metrics: dict) -> None:
        for k, v in _numeric(metrics).items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def samples(self, step: int, rows: list[dict]) -> None:
        text = "\n\n".join(
            f"**reward {r['reward']:+.2f}, acc {int(r['acc'])}**\n\n    {r['prompt'][-200:]}\n    --> {r['response']}"
            for r in rows
        )
        self.writer.add_text("samples", text, step)

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    def __init__(self, run_dir: Path, project: str, config: dict):
        try:
            import wandb
        except ImportError:
            raise RuntimeError("run.wandb=true needs the wandb package: " + _HINT.format(pkg="wandb")) from None
        self.wandb = wandb
        # The run id lives in RUN_DIR, so a resumed run continues the same W&B run.
        id_file = Path(run_dir) / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]  # W&B's own id shape
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=project, dir=str(run_dir), name=Path(run_dir).name, id=run_id, resume="allow", config=config
        )

    def metrics(self, step: int, metrics: dict) -> None:
        self.run.log(_numeric(metrics), step=step)

    def samples(self, step: int, rows: list[dict]) -> None:
        if rows:
            cols = list(rows[0])
            data = [[json.dumps(r[c]) if isinstance(r[c], (dict, list)) else r[c] for c in cols] for r in rows]
            self.run.log({"samples": self.wandb.Table(columns=cols, data=data)}, step=step)

    def close(self) -> None:
        self.run.finish()


def build_sinks(cfg, run_dir: Path) -> list:
    from fastdapo.config import config_to_dict

    sinks = []
    if cfg.run.tensorboard:
        sinks.append(TensorBoardSink(run_dir))
    if cfg.run.wandb:
        sinks.append(WandbSink(run_dir, cfg.run.wandb_project, config_to_dict(cfg)))
    return sinks
