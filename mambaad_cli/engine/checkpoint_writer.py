"""Checkpoints written by a background thread, so that training goes on while the files land.

An epoch's checkpoint of the ResNet-34 model is about 300 MB (model.safetensors with the frozen encoder,
train_state.pt with the AdamW moments). Written in the training loop it held training up 0.32-0.45 s per
epoch on a 2-core machine, the snapshot alone 0.02-0.04 s (benchmarks/checkpoint_bench.py); an epoch of
MVTec-AD at batch 16 trains in about 9 s on an H200, so the write was a few per cent of it. The snapshot
(every tensor copied to the CPU, the RNG states) is taken in the loop, so the files hold the state at the
end of the epoch; the writes are atomic as before (engine/checkpoint.py) and one checkpoint is written at a
time. PyTorch's own asynchronous checkpointing (torch.distributed.checkpoint.async_save) writes its sharded
folder format, not these two files.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch

from mambaad_cli.config import Config
from mambaad_cli.engine.checkpoint import model_snapshot, train_state_snapshot, write_model, write_train_state


class CheckpointWriter:
    """save(...) snapshots the run's state and writes it (in a thread when `background`); wait() returns
    once the last write landed and raises its error, if it failed."""

    def __init__(self, background: bool = True):
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(
        self,
        run_dir: Path,
        model: torch.nn.Module,
        optimizer,
        scheduler,
        cfg: Config,
        class_names: list[str],
        step: int,
        epoch: int,
    ) -> None:
        self.wait()  # one write at a time; the previous one's error surfaces here, an epoch late at most
        weights = model_snapshot(model)
        state = train_state_snapshot(model, weights, optimizer, scheduler, step, epoch)
        args = (run_dir, state, weights, cfg, list(class_names), {"step": step, "epoch": epoch})
        if not self.background:
            _write(*args)
            return
        # not a daemon: an interpreter that exits (Ctrl-C included) first lets the checkpoint land whole
        self._thread = threading.Thread(target=self._write_catching, args=args, name="checkpoint-writer")
        self._thread.start()

    def wait(self) -> None:
        self.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def join(self) -> None:
        """Wait for the write in flight without raising its error (training already failing)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _write_catching(self, *args: Any) -> None:
        try:
            _write(*args)
        except BaseException as e:  # noqa: BLE001 - raised in the training thread by wait()
            self._error = e


def _write(
    run_dir: Path, state: dict, weights: dict, cfg: Config, class_names: list[str], extra: dict
) -> None:
    # the training state first: a model.json that names an epoch always has that epoch's state beside it
    write_train_state(run_dir, state)
    write_model(run_dir, weights, cfg, class_names, extra)
