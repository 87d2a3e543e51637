"""The `retina` command line (Typer). Commands only parse, build a config and call one library function.

Heavy modules (torch, onnxruntime) are imported inside the commands so `retina --help` stays instant.
"""
from retinacli.cli.app import app

__all__ = ["app"]
