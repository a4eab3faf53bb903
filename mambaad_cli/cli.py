"""The `mambaad` command: parses options, calls one engine function, prints the result.

No logic lives here: every command is a function of mambaad_cli.engine (or .data) callable from Python.
User errors print one line and exit with code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax

from mambaad_cli.config import Config, load_preset, parse_override, preset_names, set_field
from mambaad_cli.errors import UserError

app = typer.Typer(
    name="mambaad",
    help="Multi-class unsupervised visual anomaly detection with MambaAD.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config field: --set train.lr=1e-3 (repeatable)."),
]
ScoringGraphsOption = Annotated[  # eval and predict: how a trained run scores
    bool | None,
    typer.Option(
        "--cuda-graphs/--no-cuda-graphs",
        help="Replay the scoring as CUDA graphs (default: the run's eval.cuda_graphs, auto: on a GPU, eager "
        "if a capture fails).",
    ),
]


def _overrides(sets: list[str] | None, **named: Any) -> dict[str, Any]:
    """--set pairs first, then the named options that were given (they win)."""
    result = dict(parse_override(s) for s in (sets or []))
    result.update({k: v for k, v in named.items() if v is not None})
    return result


def _print_config(cfg: Config) -> None:
    err.print("[bold]resolved config[/bold]")
    err.print(Syntax(cfg.to_yaml(), "yaml", theme="ansi_dark", background_color="default"))


@app.command("train")
def train_cmd(
    preset: Annotated[str, typer.Option(help="Preset name (see `mambaad presets`) or a YAML file.")] = "demo",
    data_root: Annotated[str | None, typer.Option(help="Dataset folder (data.root).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (train.epochs).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Global batch size, summed over --gpus processes (train.batch_size).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (train.device).")] = None,
    gpus: Annotated[
        int,
        typer.Option(help="Data-parallel processes, one per GPU (torchrun); with --device cpu: CPU ones."),
    ] = 1,
    precision: Annotated[
        str | None,
        typer.Option(help="fp32 (the paper's recipe), tf32 (TF32 products) or bf16 (train.precision)."),
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option("--channels-last/--no-channels-last", help="NHWC memory layout (train.channels_last)."),
    ] = None,
    compile_: Annotated[
        bool, typer.Option("--compile", help="torch.compile the fusion and decoder (train.compile).")
    ] = False,
    cuda_graphs: Annotated[
        bool | None,
        typer.Option(
            "--cuda-graphs/--no-cuda-graphs",
            help="Replay each step and the final scoring as CUDA graphs (*.cuda_graphs). Default: auto, on "
            "GPUs without --compile (with --gpus too), eager if a capture fails; --cuda-graphs insists.",
        ),
    ] = None,
    run_name: Annotated[str | None, typer.Option(help="Run folder name (default: a timestamp).")] = None,
    output_dir: Annotated[str | None, typer.Option(help="Where runs/<preset>/<name> go.")] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue this run folder (or runs/<preset>/latest).")
    ] = None,
    deterministic: Annotated[
        bool, typer.Option(help="Bitwise-repeatable runs (slower; on a GPU the scan runs in PyTorch).")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    set_: SetOption = None,
) -> None:
    """Train MambaAD on a dataset, then evaluate it on the test split."""
    from mambaad_cli.engine import train
    from mambaad_cli.engine.distributed import is_main_process, launched_by_torchrun
    from mambaad_cli.engine.evaluate import load_run_config
    from mambaad_cli.engine.launch import check_process_count, launch_training
    from mambaad_cli.viz.tables import metrics_table

    overrides = _overrides(
        set_,
        **{
            "data.root": data_root,
            "train.epochs": epochs,
            "train.batch_size": batch_size,
            "train.device": device,
            "run_name": run_name,
            "output_dir": output_dir,
            "train.deterministic": deterministic or None,
            "train.precision": precision,
            "train.channels_last": channels_last,
            "train.compile": compile_ or None,
            "train.cuda_graphs": cuda_graphs,
            "eval.cuda_graphs": cuda_graphs,
        },
    )
    if resume:
        run_dir = _resume_dir(resume)
        cfg = load_run_config(run_dir)
        for key, value in overrides.items():
            set_field(cfg, key, value)
    else:
        run_dir = None
        cfg = load_preset(preset, overrides)
    launch = gpus != 1 and not launched_by_torchrun()  # under torchrun this process is one of the workers
    if launch:
        check_process_count(cfg.train.device, gpus)
    if is_main_process():
        _print_config(cfg)
    if launch:
        raise typer.Exit(launch_training(cfg, gpus, resume=run_dir, show_progress=progress))
    result = train(cfg, resume=run_dir, show_progress=progress)
    if not is_main_process():
        return
    if result.metrics is not None:
        out.print(metrics_table(result.metrics, title=f"{cfg.preset}: test metrics (%)"))
    out.print(f"run folder: {result.run_dir}  ({result.steps} steps, {result.seconds:.0f} s training)")


def _resume_dir(resume: str) -> Path:
    path = Path(resume)
    if (path / "config.yaml").is_file():
        return path.resolve()
    if path.is_dir() and (path / "latest" / "config.yaml").is_file():
        return (path / "latest").resolve()
    raise UserError(f"--resume {resume}: no run folder with a config.yaml there")


@app.command("eval")
def eval_cmd(
    run: Annotated[str, typer.Argument(help="Run folder, e.g. runs/mvtec/latest.")],
    data_root: Annotated[str | None, typer.Option(help="Evaluate on another dataset folder.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Evaluation batch size (eval.batch_size).")] = None,
    precision: Annotated[
        str | None, typer.Option(help="fp32 (exact, the default), tf32 or bf16 autocast (eval.precision).")
    ] = None,
    cuda_graphs: ScoringGraphsOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    set_: SetOption = None,
) -> None:
    """Evaluate a trained run: the seven metrics per class and their mean (metrics.json, metrics.csv).
    Under torchrun every process scores a shard of the test set; the metrics equal one process's."""
    from mambaad_cli.engine import evaluate_run
    from mambaad_cli.engine.distributed import is_main_process
    from mambaad_cli.viz.tables import metrics_table

    overrides = _overrides(
        set_,
        **{
            "data.root": data_root,
            "train.device": device,
            "eval.batch_size": batch_size,
            "eval.precision": precision,
            "eval.cuda_graphs": cuda_graphs,
        },
    )
    run_dir, result, cfg = evaluate_run(run, overrides, show_progress=progress)
    if not is_main_process():
        return
    out.print(metrics_table(result, title=f"{cfg.preset}: test metrics (%)"))
    out.print(f"wrote {run_dir / 'metrics.json'} and metrics.csv  ({result.images_per_s:.1f} images/s)")


@app.command("predict")
def predict_cmd(
    paths: Annotated[list[str], typer.Argument(help="Images, folders (searched recursively) or globs.")],
    out_dir: Annotated[str, typer.Option("--out", help="Output folder for scores.csv, overlays, masks.")] = (
        "predictions"
    ),
    model: Annotated[
        str | None, typer.Option("--model", help="Run folder (default: the newest runs/*/latest).")
    ] = None,
    threshold: Annotated[
        str, typer.Option(help="auto (the model's per-class thresholds) or a number for every image.")
    ] = "auto",
    class_name: Annotated[
        str | None, typer.Option("--class", help="Class of every input (default: from its folder).")
    ] = None,
    save_maps: Annotated[bool, typer.Option(help="Also write the raw maps (.npy, float16).")] = False,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch (eval.batch_size).")] = None,
    workers: Annotated[int, typer.Option(help="Image-loading worker processes.")] = 0,
    writers: Annotated[
        int | None, typer.Option(help="Threads writing the overlays and masks (default: up to 8).")
    ] = None,
    cuda_graphs: ScoringGraphsOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    precision: Annotated[
        str | None, typer.Option(help="fp32, tf32 or bf16 autocast (default: the run's eval.precision).")
    ] = None,
) -> None:
    """Score images with a trained run: scores.csv, a heat-map overlay and a mask per image."""
    from mambaad_cli.engine.predict import predict, summary_table

    result = predict(
        paths,
        out_dir,
        run=model,
        threshold=threshold,
        class_name=class_name,
        save_maps=save_maps,
        device=device,
        batch_size=batch_size,
        num_workers=workers,
        show_progress=progress,
        precision=precision,
        writers=writers,
        cuda_graphs=cuda_graphs,
    )
    out.print(summary_table(result))
    for _, reason in result.skipped:
        err.print(f"[yellow]skipped:[/yellow] {reason}", highlight=False, soft_wrap=True)
    out.print(f"wrote {result.out_dir / 'scores.csv'} and {len(result.predictions)} overlays and masks")


@app.command("visualize")
def visualize_cmd(
    run: Annotated[str, typer.Argument(help="Run folder, e.g. runs/mvtec/latest.")],
    out_dir: Annotated[str | None, typer.Option("--out", help="Output folder (default: RUN/report).")] = None,
    worst: Annotated[int, typer.Option(help="Worst false positives / negatives shown per class.")] = 4,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch (eval.batch_size).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """HTML report of a run on its test split: metrics, ROC / PR curves, histograms, worst cases."""
    from mambaad_cli.engine.visualize import summary_table, visualize_run

    result = visualize_run(
        run, out_dir, device=device, batch_size=batch_size, worst=worst, show_progress=progress
    )
    out.print(summary_table(result))
    out.print(f"wrote {result.report_path} and {result.scores_path.name}")


@app.command("prepare-data")
def prepare_data_cmd(
    dataset: Annotated[
        str, typer.Option(help="mvtec, mvtec3d, visa, realiad, uni_medical, coco_ad or folder.")
    ] = "mvtec",
    root: Annotated[str, typer.Option(help="Dataset folder as its authors distribute it.")] = ".",
    out_path: Annotated[
        str | None,
        typer.Option("--out", help="A .json file or a folder for the manifest(s), for a read-only ROOT."),
    ] = None,
    classes: Annotated[
        list[str] | None, typer.Option("--class", help="Only this class (repeatable; default: all).")
    ] = None,
    views: Annotated[str | None, typer.Option(help="Real-IAD camera views, e.g. 1,3 (default: all).")] = None,
    split: Annotated[int, typer.Option(help="COCO-AD split 0-3 (default -1: all four).")] = -1,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad file instead of skipping it.")] = False,
    check: Annotated[bool, typer.Option(help="Decode every image and mask (--no-check: exist only).")] = True,
    workers: Annotated[int | None, typer.Option(help="Image-checking processes (default: up to 8).")] = None,
) -> None:
    """Check a dataset folder and write its manifest (ADer's meta.json), listing what was skipped."""
    from mambaad_cli.data.prepare import prepare_data
    from mambaad_cli.data.report import problems_table
    from mambaad_cli.viz.tables import counts_table

    result = prepare_data(
        dataset,
        root,
        out_path,
        classes,
        views=views,
        split=split,
        strict=strict,
        check=check,
        workers=workers,
        show_progress=True,
    )
    out.print(counts_table(result.counts, title=f"{dataset}: {root}"))
    if result.problems:
        out.print(problems_table(result.problems))
    for path in result.manifests:
        out.print(f"wrote {path}", soft_wrap=True)
    if out_path:
        out.print(f"train on it with: --data-root {root} --set data.meta={out_path}", soft_wrap=True)


@app.command("presets")
def presets_cmd() -> None:
    """List the shipped presets."""
    for name in preset_names():
        cfg = load_preset(name)
        out.print(
            f"{name:12s} dataset={cfg.data.dataset:12s} root={cfg.data.root:24s} "
            f"encoder={cfg.model.encoder.name} ({cfg.model.encoder.weights}) epochs={cfg.train.epochs}"
        )


@app.command("config")
def config_cmd(
    preset: Annotated[str, typer.Option(help="Preset name or YAML file.")] = "demo",
    set_: SetOption = None,
) -> None:
    """Print the resolved config of a preset with overrides, as YAML."""
    out.print(load_preset(preset, _overrides(set_)).to_yaml(), end="")


@app.command("bench")
def bench_cmd(
    scan: Annotated[str, typer.Option(help="Scan curve of the SS2D rows and the model.")] = "hilbert",
    batch: Annotated[
        str | None, typer.Option(help="Batch sizes, comma-separated (default 16 on GPU, 1 on CPU).")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="fp32,bf16 or one of them (default both on GPU, fp32 on CPU).")
    ] = None,
    shapes: Annotated[
        str, typer.Option(help="mambaad (MambaAD's four D:L at 256x256; small ones on CPU) or D:L,D:L.")
    ] = "mambaad",
    backends: Annotated[
        str | None,
        typer.Option(help="Scan backends: triton, cuda, torch (default: those of triton, cuda that run)."),
    ] = None,
    model: Annotated[
        bool, typer.Option("--model", help="Also time MambaAD training and inference (mvtec preset).")
    ] = False,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write every number to this JSON file.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    warmup_ms: Annotated[float, typer.Option("--warmup-ms", help="Warm-up time per measurement.")] = 25.0,
    rep_ms: Annotated[float, typer.Option("--rep-ms", help="Timed repetitions per measurement.")] = 100.0,
) -> None:
    """Benchmark the selective scan (against its floors and mamba_ssm's CUDA kernel), the fused SS2D core
    and, with --model, MambaAD's images/s. Exit code 1 when a kernel's output is WRONG."""
    import shlex

    from mambaad_cli.engine.bench import parse_options, run_bench

    options = parse_options(
        scan=scan, batch=batch, dtype=dtype, shapes=shapes, backends=backends, model=model,
        json_path=json_path, device=device, warmup_ms=warmup_ms, rep_ms=rep_ms,
        command=shlex.join(["mambaad", *sys.argv[1:]]),
    )
    # wide tables: a pipe or a log file would otherwise get rich's 80 columns
    console = out if out.is_terminal else Console(width=160)
    if not run_bench(options, console=console)["ok"]:
        raise typer.Exit(1)


def one_line(e: Exception) -> str:
    """The message of a user error; one raised in a DataLoader worker comes back wrapped in the
    worker's traceback text, whose last line is the original message."""
    text = str(e).strip()
    if "Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if last.startswith(type(e).__module__) else last
    return text


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one line on stderr and exit code 2.

    Typer/click handle usage errors themselves in standalone mode (message, exit code 2)."""
    try:
        app(args=argv, standalone_mode=True)
    except UserError as e:
        # escape: messages quote user paths and names like 'mambaad[cuda]' that rich would read as markup
        err.print(f"[red]error:[/red] {escape(one_line(e))}", highlight=False, soft_wrap=True)
        return 2
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
