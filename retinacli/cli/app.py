"""Top-level Typer app: wires the sub-apps and commands together."""
from __future__ import annotations

import typer

from retinacli import __version__
from retinacli.cli import evaluate_cmd, export_cmd, process_cmd, train_cmd

app = typer.Typer(
    name="retina",
    help="Batch analysis of colour fundus photographs: vessel masks, CSV reports, training and export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("process")(process_cmd.process)
app.add_typer(train_cmd.app, name="train")
app.add_typer(evaluate_cmd.app, name="evaluate")
app.command("export-onnx")(export_cmd.export_onnx)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"retina {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """retina: decision-support outputs for fundus photographs (findings and hints, never a diagnosis)."""
