"""`mambaad train --gpus N`: the same training in N processes, started through torchrun's launcher.

The command the user typed has already resolved the config. It writes it to a temporary YAML file and
runs torch.distributed.run (what `torchrun` runs) in-process: standalone rendezvous on this machine,
nproc_per_node N, each worker running `python -m mambaad_cli.engine.launch CONFIG [--resume RUN]`,
which calls engine.train (engine/distributed.py does the rest). A user error in the workers comes back
as one UserError (one line, exit code 2); a crashed worker as exit code 1.

Where the processes run: with --device cuda (or auto on a machine with GPUs) one per GPU, over NCCL;
with --device cpu, N CPU processes over gloo (to try a multi-process run, or test it, without GPUs).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml

from mambaad_cli.config import Config, config_from_dict
from mambaad_cli.engine.device import resolve_device
from mambaad_cli.engine.progress import console
from mambaad_cli.errors import UserError
from mambaad_cli.metrics.sorted_values import usable_cores

USER_ERROR_EXIT = 2


def check_process_count(device_name: str, processes: int) -> torch.device:
    """The device kind the processes will use; a UserError when there are not enough GPUs."""
    if processes < 1:
        raise UserError(f"--gpus {processes}: must be at least 1")
    device = resolve_device(device_name)
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if processes > visible:
            raise UserError(f"--gpus {processes}: only {visible} CUDA device(s) visible on this machine")
    elif device_name == "auto":
        raise UserError(
            f"--gpus {processes}: no CUDA device on this machine "
            f"(add --device cpu to run {processes} CPU processes over gloo)"
        )
    return device


def launch_training(
    cfg: Config, processes: int, resume: str | Path | None = None, show_progress: bool = True
) -> int:
    """Run engine.train(cfg) in `processes` processes through torchrun; returns 0, or 1 when a worker
    crashed. A user error in the workers is raised here, as one UserError."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    device = check_process_count(cfg.train.device, processes)
    with tempfile.TemporaryDirectory(prefix="mambaad-launch-") as tmp:
        config_path = Path(tmp) / "config.yaml"
        config_path.write_text(cfg.to_yaml())
        worker_args = [str(config_path), "--error-dir", tmp]
        if resume is not None:
            worker_args += ["--resume", str(resume)]
        if not show_progress:
            worker_args.append("--no-progress")
        threads = 1 if device.type == "cuda" else max(1, usable_cores() // processes)
        torchrun_args = ["--standalone", f"--nproc-per-node={processes}", "--module", __name__, *worker_args]
        try:
            with _environ(OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(threads))), _quiet_agent():
                run(parse_args(torchrun_args))
        except ChildFailedError as e:
            errors = sorted(Path(tmp).glob("error.*"), key=lambda p: int(p.suffix[1:]))
            if errors:  # the ranks stopped on a user error; every rank has the same message
                raise UserError(errors[0].read_text()) from None
            for rank, failure in sorted(e.failures.items()):  # crashed: its traceback is above
                code = failure.exitcode
                console.print(f"[red]error:[/red] training process {rank} stopped (exit code {code})")
            return 1
        except SignalException:
            return 130
    return 0


@contextlib.contextmanager
def _quiet_agent() -> Iterator[None]:
    """torchrun's agent logs each stopped worker; the workers' own messages (or ours) say it better."""
    agent_log = logging.getLogger("torch.distributed.elastic")
    level = agent_log.level
    agent_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        agent_log.setLevel(level)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the workers, restored afterwards (torchrun reads os.environ)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def worker_main(argv: list[str] | None = None) -> int:
    """One worker: train the config file's run; rank 0 prints the results. A user error is left in
    ERROR_DIR/error.<rank> for the launcher to report once (a rank may be stopped before it could print)."""
    from rich.console import Console

    from mambaad_cli.engine.distributed import env_context
    from mambaad_cli.engine.train import train
    from mambaad_cli.viz.tables import metrics_table

    parser = argparse.ArgumentParser(prog="mambaad_cli.engine.launch")
    parser.add_argument("config")
    parser.add_argument("--error-dir", required=True)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    rank = env_context().rank
    try:
        cfg = config_from_dict(yaml.safe_load(Path(args.config).read_text()))
        result = train(cfg, resume=args.resume, show_progress=args.progress)
    except UserError as e:
        (Path(args.error_dir) / f"error.{rank}").write_text(str(e))
        return USER_ERROR_EXIT
    if rank == 0:
        out = Console()
        if result.metrics is not None:
            out.print(metrics_table(result.metrics, title=f"{cfg.preset}: test metrics (%)"))
        out.print(f"run folder: {result.run_dir}  ({result.steps} steps, {result.seconds:.0f} s training)")
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
