"""`retina export-onnx`: checkpoint -> shipped model folder, with the mandatory parity check."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def export_onnx(
    checkpoint: Path = typer.Argument(..., help="A retina checkpoint (.pt) from `retina train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write (model.onnx, model.pt, metadata.json)."),
    parity_images: Optional[List[Path]] = typer.Option(None, "--parity-images",
                                                       help="Images or folders for the torch-vs-ONNX Runtime parity "
                                                            "check (two noise canvases are always added)."),
    tolerance: float = typer.Option(1e-4, help="Maximum |probability difference| allowed."),
    name: Optional[str] = typer.Option(None, help="Model name written to metadata.json (default: the "
                                                  "checkpoint's task, e.g. vessels or hemorrhage)."),
    test_time_flips: Optional[List[str]] = typer.Option(None, "--test-time-flips",
                                                        help="Repeatable: horizontal, vertical or both. Written to "
                                                             "metadata.json: every run of the model (process, "
                                                             "evaluate) then averages its output over these mirrored "
                                                             "copies of the canvas (one extra inference each)."),
    avx512_graph: bool = typer.Option(True, "--avx512-graph/--no-avx512-graph",
                                      help="Also write model.avx512.onnx: the same model laid out on image pairs, "
                                           "which ONNX Runtime runs instead of model.onnx on CPUs with AVX-512 "
                                           "(faster there; parity-checked like model.onnx)."),
    extra_canvas_px: Optional[List[int]] = typer.Option(None, "--extra-canvas-px",
                                                        help="Repeatable: a smaller canvas side (px) to ship graphs "
                                                             "for as well (model.c<side>.onnx). Images whose FOV is "
                                                             "drawn small enough to keep the canvas margin run on "
                                                             "it: e.g. 928 for a 1056-px model whose FOV is never "
                                                             "drawn below 896 px, so DRIVE-size photographs run on "
                                                             "23% fewer pixels. Parity-checked like model.onnx."),
) -> None:
    """Export to ONNX (fixed H x W, dynamic batch, normalisation inside the graph), then check parity.

    A failed parity check fails the command and leaves the folder's existing model untouched.
    """
    from retinacli.export.artefact_writer import export_model_folder
    from retinacli.export.onnx_export import ParityError
    from retinacli.io.discover import discover_inputs

    from retinacli.io.decode import DecodeError
    from retinacli.runtime.flip_average import check_flips

    try:
        images = [it.path for it in discover_inputs(list(parity_images))] if parity_images else []
        extra = {"test_time_flips": list(check_flips(test_time_flips))} if test_time_flips else None
        meta = export_model_folder(checkpoint, out, images, tolerance, name, extra, avx512_graph,
                                   tuple(extra_canvas_px or ()))
    except ParityError as exc:
        typer.secho(f"parity check failed: {exc}", fg="red", err=True)
        raise typer.Exit(1)
    except (FileNotFoundError, ValueError, DecodeError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2)
    p = meta["parity"]
    typer.echo(f"wrote {out}/model.onnx ({meta['parameters']} parameters); parity on {p['images']} images: "
               f"max |diff| {p['max_abs_diff']:.2e} <= {p['tolerance']:g}"
               + "".join(f"; {g['file']}: max |diff| {g['parity']['max_abs_diff']:.2e}"
                         for g in meta.get("graphs", {}).values())
               + "".join(f"; {c[f]}: max |diff| {c[par]['max_abs_diff']:.2e}" for c in meta.get("canvases", {}).values()
                         for f, par in (("file", "parity"), ("avx512_file", "avx512_parity")) if f in c)
               + (f"; test-time flips: {', '.join(meta['test_time_flips'])}" if meta.get("test_time_flips") else ""))
