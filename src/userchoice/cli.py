"""Command line: a thin typer layer over the library (``userchoice --help``).

Exit codes: 0 ok, 2 bad usage (unknown option, invalid value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from userchoice import __version__

app = typer.Typer(
    name="userchoice",
    help="Simulate ML markets where users choose among competing learners (MSGD, MSGD-P).",
    no_args_is_help=True,
    add_completion=False,
)


def _mean_se(mean: float, se: float) -> str:
    return f"{mean:.4g}" if np.isnan(se) else f"{mean:.4g} ± {se:.2g}"


@app.command()
def demo(
    seeds: Annotated[int, typer.Option(min=1, help="Independent runs per probing weight p.")] = 5,
    out: Annotated[Path, typer.Option(help="Folder for the figure (created if missing).")] = Path(
        "demo_output"
    ),
    gap: Annotated[
        float, typer.Option(min=0.0, help="Γ: distance between the two groups' best models.")
    ] = 10.0,
    steps: Annotated[int, typer.Option(min=1, help="MSGD steps T per run.")] = 2000,
) -> None:
    """Show the overspecialisation trap and its escape by preference-aware probing.

    Two user groups, two least-squares learners (ERM init, τ = 0.7); learner 0 probes its
    users' preferred learner with weight p (p = 0 is plain MSGD).
    """
    from userchoice.demo import run_demo

    console = Console()
    with console.status("simulating (the first call compiles the engine)…"):
        try:
            result = run_demo(seeds=seeds, gap=gap, out_dir=out, steps=steps)
        except ValueError as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from err

    s = result.settings
    table = Table(
        title=(
            f"Final global test risk: trap market, Γ = {s['gap']:g}, τ = {s['tau']:g}, "
            f"{result.seeds} seed(s), T = {s['steps']}"
        ),
    )
    table.add_column("p", justify="right")
    table.add_column("learner", justify="right")
    table.add_column("global risk (mean ± s.e.)", justify="right")
    table.add_column("update-all copy", justify="right")
    for k, p in enumerate(result.p_values):
        for i in range(result.n_learners):
            table.add_row(
                f"{p:g}" + (" (MSGD)" if p == 0 else ""),
                f"{i}" + (" (prober)" if i == result.prober else ""),
                _mean_se(result.risk_mean[k, i], result.risk_se[k, i]),
                _mean_se(result.update_all_mean[k, i], result.update_all_se[k, i]),
                end_section=i == result.n_learners - 1,
            )
    console.print(table)
    console.print(
        f"pooled optimum (least squares on all training users): test risk {result.pooled_risk:.4g}"
    )
    if result.n_diverged:
        console.print(f"[yellow]warning:[/yellow] {result.n_diverged} run(s) diverged (NaN)")
    console.print(f"figure written to {result.figure_path}  ({result.seconds:.1f} s)")


@app.command()
def version() -> None:
    """Print the installed userchoice version."""
    typer.echo(f"userchoice {__version__}")


if __name__ == "__main__":
    app()
