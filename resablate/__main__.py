"""`python -m resablate [overrides] [-m]`: the Hydra app of resablate/app/cli.py."""

from resablate.app.cli import cli

if __name__ == "__main__":
    cli()
