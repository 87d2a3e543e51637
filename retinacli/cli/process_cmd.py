"""`retina process`: the nightly batch command."""
from __future__ import annotations

import signal
from pathlib import Path
from typing import List

import typer

from retinacli.cli.defaults import default_model_dir


def _terminate(signum, frame):  # SIGTERM -> the same orderly stop as Ctrl-C
    raise KeyboardInterrupt


def _optional_model(wanted: bool, given: Path | None, name: str, off_flag: str) -> Path | None:
    """The model of an optional stage: the one given, else the shipped engines/<name>; a shipped one that is not
    installed skips the stage with a note (a model the user named must exist: that error comes later)."""
    if not wanted:
        return None
    if given is not None:
        return given
    path = default_model_dir(name)
    if not (path / "metadata.json").exists():
        typer.secho(f"note: no shipped {name} model at {path}: that stage is skipped (pass {off_flag} to silence "
                    f"this, or --{name}-model PATH)", err=True)
        return None
    return path


def process(
    inputs: List[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; nothing is written anywhere else."),
    model: Path = typer.Option(None, "--model", help="Model folder (model.onnx + metadata.json) or checkpoint .pt. "
                                                     "Default: the shipped engines/vessels."),
    hemorrhage: bool = typer.Option(True, "--hemorrhage/--no-hemorrhage",
                                    help="Run the haemorrhage model, disc/fovea location and the DR hint "
                                         "(--no-hemorrhage: vessels only; the hint is then NOT_ASSESSED)."),
    hemorrhage_model: Path = typer.Option(None, "--hemorrhage-model",
                                          help="Haemorrhage model folder or checkpoint .pt. Default: the shipped "
                                               "engines/hemorrhage."),
    av: bool = typer.Option(True, "--av/--no-av", help="Run the artery/vein model: A/V map, segments.csv and the "
                                                       "biomarker columns (CRAE, CRVE, AVR, tortuosity, D0)."),
    av_model: Path = typer.Option(None, "--av-model", help="A/V model folder or checkpoint .pt. Default: the shipped "
                                                           "engines/av."),
    backend: str = typer.Option("auto", help="auto | onnxruntime | torch."),
    batch_size: int = typer.Option(4, min=1, help="Images per inference batch."),
    threads: int = typer.Option(0, help="Inference threads (0: runtime default)."),
    workers: int = typer.Option(2, min=1, help="Decode and write worker threads."),
    save_probabilities: bool = typer.Option(False, "--save-probabilities",
                                            help="Also write each vessel (and haemorrhage) probability map (8-bit PNG)."),
    overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="Write an overlay image per input."),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="Skip inputs already done in this --out with the same file and model."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Vessel and haemorrhage masks, artery/vein map, overlays, findings, vessel segments, biomarkers, a DR grade
    hint (a lower bound from haemorrhage findings, never a diagnosis), report.csv and run_summary.json for every
    input image.

    Exit codes: 0 all images processed; 3 some inputs failed (see report.csv); 4 no inputs found;
    2 bad arguments or unusable model; 130 interrupted (Ctrl-C or SIGTERM; re-run to resume).
    """
    from retinacli.pipeline.config import ProcessConfig
    from retinacli.pipeline.run import EXIT_NO_INPUTS, process_inputs
    from retinacli.runtime.base import BackendUnavailable

    h_model = _optional_model(hemorrhage, hemorrhage_model, "hemorrhage", "--no-hemorrhage")
    a_model = _optional_model(av, av_model, "av", "--no-av")
    cfg = ProcessConfig(inputs=list(inputs), out_dir=out, model=model or default_model_dir("vessels"),
                        hemorrhage_model=h_model, av_model=a_model,
                        backend=backend, batch_size=batch_size, threads=threads, workers=workers,
                        save_probabilities=save_probabilities, overlay=overlay, resume=resume, progress=not quiet)
    try:  # a scheduler's stop (SIGTERM) still leaves report + summary; only possible on the main thread
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:
        previous = None
    try:
        result = process_inputs(cfg)
    except KeyboardInterrupt:
        typer.secho("interrupted: report.csv lists finished images and 'pending' ones; run the same command "
                    "again to resume", fg="yellow", err=True)
        raise typer.Exit(130)
    except (OSError, BackendUnavailable, ValueError) as exc:  # missing input/model, --out not a folder...
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if result.ignored:
        names = ", ".join(p.name for p in result.ignored[:5]) + (" ..." if len(result.ignored) > 5 else "")
        typer.secho(f"note: {len(result.ignored)} file(s) without an image extension ignored: {names}", err=True)
    if result.exit_code == EXIT_NO_INPUTS:
        typer.secho("error: no image files found in the inputs", fg="red", err=True)
        raise typer.Exit(result.exit_code)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    typer.echo(f"{counts}\nreport: {result.report_path}\nsummary: {result.summary_path}")
    raise typer.Exit(result.exit_code)
