"""`python -m retinacli.cli.main ...` runs the CLI (same as the `retina` script)."""
from retinacli.cli.app import app

if __name__ == "__main__":
    app()
