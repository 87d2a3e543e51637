"""`retina evaluate ...`: score models against ground truth."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from retinacli.cli.defaults import default_model_dir

app = typer.Typer(help="Evaluate models against ground truth.", no_args_is_help=True)


@app.command("vessels")
def evaluate_vessels_cmd(
    data: List[str] = typer.Option(..., "--data", "-d", help="Dataset spec KIND:PATH[:SPLIT] (see `retina train "
                                                             "vessels --help`), repeatable; e.g. drive:DRIVE:test."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m",
                                              help="[NAME=]PATH of a model folder or checkpoint, repeatable "
                                                   "(e.g. stage1=run1/model.pt stage2=run2/model.pt). "
                                                   "Default: the shipped engines/vessels."),
    backend: str = typer.Option("auto", help="auto | onnxruntime | torch."),
    threshold: Optional[float] = typer.Option(None, help="Override the models' default thresholds."),
    out_csv: Optional[Path] = typer.Option(None, "--out-csv", help="Write per-image rows here (and the pooled "
                                                                   "rows to <name>_overall.csv)."),
) -> None:
    """AUC, ACC, SE, SP, F1 (Dice), IoU inside the FOV against the first observer, per image and pooled."""
    from retinacli.evaluate.vessels import evaluate_vessels, format_table

    models = _parse_models(model, "vessels")
    _run_evaluation(data, lambda ds: evaluate_vessels(ds, models, backend, threshold), format_table, out_csv)


def _run_evaluation(data: List[str], evaluate, format_table, out_csv: Optional[Path]) -> None:
    """Read the dataset specs, call ``evaluate(datasets)`` (-> an object with per_image and overall frames), print
    ``format_table(overall)`` and write the CSVs; a bad dataset, model or backend exits 2 with the reason."""
    from retinacli.runtime.base import BackendUnavailable
    from retinacli.train.datasets import DatasetLayoutError, read_spec

    try:
        result = evaluate({spec: read_spec(spec) for spec in data})
    except (DatasetLayoutError, FileNotFoundError, ValueError, BackendUnavailable) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2)
    typer.echo(format_table(result.overall))
    _write_csvs(result, out_csv)


def _parse_models(model: Optional[List[str]], default: str) -> dict[str, Path]:
    """[NAME=]PATH options -> {name: path}; none -> the shipped engines/<default>."""
    models = {}
    for m in model or [str(default_model_dir(default))]:
        name, sep, path = m.partition("=")
        if not sep:
            name, path = Path(m).stem if Path(m).suffix else Path(m).name, m
        models[name] = Path(path)
    return models


def _write_csvs(result, out_csv: Optional[Path]) -> None:
    from retinacli.io.write import write_text_atomic

    if out_csv:
        write_text_atomic(out_csv, result.per_image.to_csv(index=False))
        overall = out_csv.with_name(out_csv.stem + "_overall.csv")
        write_text_atomic(overall, result.overall.to_csv(index=False))
        typer.echo(f"per-image: {out_csv}\npooled: {overall}")


@app.command("hemorrhage")
def evaluate_hemorrhage_cmd(
    data: List[str] = typer.Option(..., "--data", "-d", help="Dataset spec KIND:PATH[:SPLIT], repeatable; e.g. "
                                                             "'idrid:IDRiD/A. Segmentation:test' (the official "
                                                             "27-image test split)."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="[NAME=]PATH of a model folder or "
                                                                          "checkpoint, repeatable. Default: the "
                                                                          "shipped engines/hemorrhage."),
    backend: str = typer.Option("auto", help="auto | onnxruntime | torch."),
    threshold: Optional[float] = typer.Option(None, help="Override the models' default thresholds."),
    single_pass: bool = typer.Option(False, "--single-pass", help="Ignore the test-time flips a model's artefact "
                                                                  "asks for (one inference per image), e.g. to "
                                                                  "measure what they add."),
    out_csv: Optional[Path] = typer.Option(None, "--out-csv", help="Write per-image rows here (and the pooled "
                                                                   "rows to <name>_overall.csv)."),
) -> None:
    """AUPR, Dice, IoU, SE, SP, ACC inside the FOV per image and pooled; lesion-level detection (share of
    ground-truth components hit, also for those > 100 px) and false-positive components per image."""
    from retinacli.evaluate.hemorrhage import evaluate_hemorrhage, format_table

    models = _parse_models(model, "hemorrhage")
    flips = () if single_pass else None
    _run_evaluation(data, lambda ds: evaluate_hemorrhage(ds, models, backend, threshold, flips=flips), format_table,
                    out_csv)


@app.command("av")
def evaluate_av_cmd(
    data: List[str] = typer.Option(..., "--data", "-d", help="Dataset spec with artery/vein labels, repeatable: "
                                                             "rite:RITE:test, hrf:HRF-AV:test."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="[NAME=]PATH of an A/V model folder or "
                                                                          "checkpoint, repeatable. Default: the "
                                                                          "shipped engines/av."),
    backend: str = typer.Option("auto", help="auto | onnxruntime | torch."),
    threshold: Optional[float] = typer.Option(None, help="Override the vessel threshold used by the graph step."),
    single_pass: bool = typer.Option(False, "--single-pass", help="Ignore the test-time flips a model's artefact "
                                                                  "asks for (one inference per image)."),
    out_csv: Optional[Path] = typer.Option(None, "--out-csv", help="Write per-image rows here (and the pooled "
                                                                   "rows to <name>_overall.csv)."),
) -> None:
    """A/V accuracy, sensitivity (artery) and specificity on labelled artery/vein pixels and on centreline pixels,
    before and after the graph post-processing (crossing and uncertain pixels excluded)."""
    from retinacli.evaluate.av import evaluate_av, format_table

    models = _parse_models(model, "av")
    flips = () if single_pass else None
    _run_evaluation(data, lambda ds: evaluate_av(ds, models, backend, threshold, flips=flips), format_table, out_csv)
