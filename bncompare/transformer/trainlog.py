"""What a training run reports while it runs, for a user watching from elsewhere.

- ``train_log.csv`` in the run's folder (beside the checkpoint): one row per
  step with loss, Bayes loss, learning rate, longest context, steps/s, training
  seconds, and the held-out figures on evaluation steps. Flushed every row, so
  ``tail -f`` or a notebook can follow it; a resumed run first cuts it back to
  the snapshot's step.
- TensorBoard events in ``<folder>/tensorboard`` when the ``tensorboard``
  package is importable (optional: nothing else needs it).
- A plain log line every ``log_every`` steps through :mod:`logging` when stderr
  is not a terminal (a batch job, ``nohup``, a Slurm log), where no tqdm bar shows.

Only rank 0 of a distributed run writes any of it.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import logging
import time
from collections import deque
from pathlib import Path

from bncompare.files import atomic_write_text

LOG_CSV = "train_log.csv"
BASE_COLUMNS = ["step", "loss", "bayes_loss", "lr", "n_context", "steps_per_s", "seconds"]
EVAL_KEYS = ["eval_tv", "eval_bayes_tv", "eval_mle_tv", "eval_ce", "eval_bayes_ce"]
SCALARS = ["loss", "bayes_loss", "lr", "steps_per_s"]  # per step in TensorBoard (plus every eval_* figure)
log = logging.getLogger("bncompare.transformer.train")


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def columns(eval_lengths, eval_keys=None) -> list[str]:
    """The CSV's columns; ``eval_keys`` (default: the discrete figures) are the held-out keys, each also per N."""
    if eval_keys is None:
        per_n = [f"{k}@{n}" for n in eval_lengths for k in ("eval_tv", "eval_bayes_tv", "eval_mle_tv")]
        return BASE_COLUMNS + EVAL_KEYS + per_n
    return BASE_COLUMNS + list(eval_keys) + [f"{k}@{n}" for n in eval_lengths for k in eval_keys]


class TrainLog:
    """Rows, events and log lines of one run. ``folder=None``: log lines only."""

    def __init__(self, folder, eval_lengths, start_step: int = 0, lines: bool = False, log_every: int = 100,
                 tensorboard: bool = True, total_steps: int = 0, eval_keys=None):
        self.lines, self.log_every, self.total = lines, max(1, int(log_every)), total_steps
        self.times = deque(maxlen=51)  # end times of recent steps, evaluation excluded
        self.eval_time = 0.0
        self.file = self.writer = self.tb = None
        self.columns = columns(eval_lengths, eval_keys)
        if folder is None:
            return
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOG_CSV
        self._cut(path, start_step)
        new = not path.is_file() or path.stat().st_size == 0
        self.file = open(path, "a", newline="")  # noqa: SIM115  kept open for the run, closed in close()
        self.writer = csv.DictWriter(self.file, self.columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()
            self.file.flush()
        if tensorboard and tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder / "tensorboard"), purge_step=start_step or None)

    def _cut(self, path: Path, start_step: int) -> None:
        """Keep only complete rows of steps before ``start_step`` (a resumed run redoes the rest)."""
        if not path.is_file():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        keep = [r for r in rows[1:] if len(r) == len(self.columns) and r[0].isdigit() and int(r[0]) < start_step]
        out = io.StringIO()
        if rows and rows[0] == self.columns and start_step > 0:
            csv.writer(out).writerows([rows[0], *keep])
        # else another layout (an older version) or a fresh start: begin a new log
        atomic_write_text(path, out.getvalue())

    def pause(self, seconds: float) -> None:
        """``seconds`` of evaluation: not counted in steps/s."""
        self.eval_time += seconds

    def step(self, rec: dict) -> None:
        now = time.perf_counter() - self.eval_time
        self.times.append(now)
        if len(self.times) > 1:
            rec = {**rec, "steps_per_s": (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)}
        if self.writer is not None:
            self.writer.writerow({k: _fmt(v) for k, v in rec.items()})
            self.file.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if (k in SCALARS or k.startswith("eval_")) and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, rec["step"])
        step = rec["step"]
        if self.lines and (step % self.log_every == 0 or step == self.total - 1 or "eval_tv" in rec):
            log.info(line(rec, self.total))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def line(rec: dict, total: int) -> str:
    """``step 500/3000 loss 0.4123 bayes 0.4100 lr 0.0029 12.3 steps/s | held-out TV 0.051 (Bayes 0.050)``."""
    parts = [f"step {rec['step']}/{total}", f"loss {rec['loss']:.4f}"]
    if "bayes_loss" in rec:
        parts.append(f"bayes {rec['bayes_loss']:.4f}")
    parts.append(f"lr {rec['lr']:.3g}")
    if "steps_per_s" in rec:
        parts.append(f"{rec['steps_per_s']:.2f} steps/s")
    text = " ".join(parts)
    if "eval_tv" in rec:
        text += f" | held-out TV {rec['eval_tv']:.4f}"
        if "eval_bayes_tv" in rec:
            text += f" (Bayes {rec['eval_bayes_tv']:.4f})"
    if "eval_kl" in rec:
        text += f" | held-out KL {rec['eval_kl']:.4f}"
        if "eval_bayes_kl" in rec:
            text += f" (Bayes {rec['eval_bayes_kl']:.4f})"
    return text
