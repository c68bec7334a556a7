"""Command line: a thin typer layer over the library (``userchoice --help``).

Exit codes: 0 ok, 2 bad usage (unknown option, invalid value) or an OS error (disk full,
read-only folder, no permission, a folder where a file is expected, a name too long, …): every
command reports those as one line naming the path (``_Commands``), never a traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from userchoice.data.registry import DATASETS
from userchoice.version import __version__

_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    getattr(errno, "EDQUOT", -1): "the disk quota is used up: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere (--out)",
    errno.EACCES: "no permission: check the folder's owner and mode, or write elsewhere",
    errno.EPERM: "not permitted: check the folder's owner and mode, or write elsewhere",
    errno.EISDIR: "it is a folder; a file was expected there",
    errno.ENOTDIR: "a part of the path is a file; a folder was expected there",
    errno.EEXIST: "it already exists (as a file where a folder is needed?)",
    errno.ENAMETOOLONG: "a name in the path is too long (at most 255 bytes per name)",
    errno.ENOENT: "no such file or folder",
}


def os_error_message(error: OSError) -> str:
    """One line for an ``OSError``: the path(s), the system's reason, its code and a hint."""
    where = " → ".join(str(name) for name in (error.filename, error.filename2)
                       if name is not None)
    reason = error.strerror or str(error) or type(error).__name__
    code = errno.errorcode.get(error.errno or 0, "")
    hint = _OS_HINTS.get(error.errno or 0)
    return (f"error: {where + ': ' if where else ''}{reason}{f' ({code})' if code else ''}"
            f"{f'; {hint}' if hint else ''}")


class _Commands(TyperGroup):
    """The command group: an ``OSError`` escaping any command (``run``, ``data import``, …)
    becomes ``os_error_message`` on stderr and exit code 2, not a traceback (result parts,
    manifests and data files are written by ``userchoice.atomic``: never left half-written)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as error:
            if error.errno == errno.EPIPE:  # a closed pipe: typer's own handling
                raise
            typer.echo(os_error_message(error), err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    name="userchoice",
    help="Simulate ML markets where users choose among competing learners (MSGD, MSGD-P).",
    no_args_is_help=True,
    add_completion=False,
    cls=_Commands,
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


data_app = typer.Typer(help="Real datasets: what is where, download, import a local copy.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", file_okay=False,  # an existing file here is a usage error (exit 2)
    help="Data directory (default: $USERCHOICE_DATA or ~/.local/share/userchoice).")]


def _one_of(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


def _dataset_name(name: str, *, fetchable: bool = False) -> str:
    """A dataset ``data fetch`` (``fetchable``) or ``data import`` supports, from the registry."""
    names = DATASETS.named(fetchable=fetchable, importable=True)
    if name not in names:
        raise typer.BadParameter(f"must be one of {', '.join(names)}", param_hint="NAME")
    return name


@data_app.command("list")
def data_list() -> None:
    """List the registered datasets: kind, whether they read files / can be fetched."""
    from rich.markup import escape

    table = Table()
    for column in ("dataset", "kind", "files", "fetch", "description"):
        table.add_column(column)
    for name, entry in DATASETS.items():
        table.add_row(name, entry.kind, "yes" if entry.file_backed else "no",
                      "yes" if entry.fetchable else "no", escape(entry.description))
    Console().print(table)


@data_app.command("info")
def data_info(data_dir: DataDir = None) -> None:
    """List the dataset files found in the data directory."""
    from userchoice.data.common import data_dir as resolve
    from userchoice.data.fetch import inventory

    console = Console()
    console.print(f"data directory: {resolve(data_dir)}")
    table = Table()
    table.add_column("dataset")
    table.add_column("file")
    table.add_column("MB", justify="right")
    for name, files in inventory(data_dir).items():
        if not files:
            get = "fetch" if DATASETS.get(name).fetchable else "import"
            table.add_row(name, f"[yellow]none[/yellow]: userchoice data {get} {name}"
                          + (" PATH" if get == "import" else ""), "")
        for f in files:
            table.add_row(name, f["file"], f"{f['bytes'] / 1e6:.1f}")
    console.print(table)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help=f"{_one_of(DATASETS.named(fetchable=True))}.")],
    data_dir: DataDir = None,
    state: Annotated[list[str] | None, typer.Option(
        help="census: state postal code(s); default AL.")] = None,
    year: Annotated[int | None, typer.Option(
        help="census: survey year (1-Year PUMS); default 2018.")] = None,
    variant: Annotated[str | None, typer.Option(
        help="movielens: ml-100k, ml-1m, ml-10m (default), …")] = None,
    category: Annotated[list[str] | None, typer.Option(
        help="amazon: category (repeat); default the paper's nine.")] = None,
    force: Annotated[bool, typer.Option(help="Download again even if present.")] = False,
) -> None:
    """Download a dataset's official files (verified, written atomically)."""
    from userchoice.data.fetch import DownloadError, fetch

    name = _dataset_name(name, fetchable=True)
    console = Console()
    # Only the options given; the dataset's fetch plan rejects those it does not take.
    given = {"states": tuple(state) if state else None, "year": year, "variant": variant,
             "categories": tuple(category) if category else None}
    options = {key: value for key, value in given.items() if value is not None}
    try:
        with console.status(f"downloading {name}…"):
            records = fetch(name, root=data_dir, force=force, **options)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    except DownloadError as err:
        console.print(f"[red]download failed:[/red] {err}")
        raise typer.Exit(1) from err
    for r in records:
        pinned = "verified against the published sha256" if r["pinned"] else \
            "no published checksum: archive and format checked, sha256 recorded"
        console.print(f"{r['status']}: {r['file']} ({r['bytes'] / 1e6:.1f} MB; {pinned}; "
                      f"sha256 {r['sha256'][:16]}…)")


@data_app.command("import")
def data_import(
    name: Annotated[str, typer.Argument(help=f"{_one_of(DATASETS.named(importable=True))}.")],
    path: Annotated[Path, typer.Argument(help="A local copy of the dataset file.")],
    data_dir: DataDir = None,
    link: Annotated[bool, typer.Option(help="Symlink instead of copying.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Import even a file that does not verify (replacing a copy in place)."
    )] = False,
) -> None:
    """Copy (or link) a local dataset file into the data directory, after verifying all of it
    (decompressed, every record parsed, ranges and columns checked). A file that does not
    verify is not imported and a copy already in place is kept, unless --force."""
    import warnings

    from rich.markup import escape

    from userchoice.data.common import DataFormatError
    from userchoice.data.fetch import UnverifiedImportWarning, import_file

    name = _dataset_name(name)
    console = Console()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnverifiedImportWarning)
            target = import_file(name, path, root=data_dir, link=link, force=force)
    except (FileNotFoundError, DataFormatError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}")
        raise typer.Exit(2) from err
    for warning in caught:
        if issubclass(warning.category, UnverifiedImportWarning):
            console.print(f"[yellow]warning:[/yellow] {escape(str(warning.message))}")
    console.print(f"imported {escape(str(path))} → {escape(str(target))}")


def _progress_bar(console: Console, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    progress = Progress("[progress.description]{task.description}", BarColumn(),
                        MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                        transient=False)
    task = progress.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return progress, update


def _runner(executor: str, address: str | None, workers: int | None):
    from userchoice.experiments.runner import local_runner

    if executor == "local":
        return local_runner(workers)
    if executor == "ray":
        from userchoice.experiments.ray_runner import ray_runner

        try:
            return ray_runner(address, num_cpus=workers)
        except ImportError as err:
            Console().print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from err
    raise typer.BadParameter("must be 'local' or 'ray'", param_hint="--executor")


def _sweep(config, out: Path, executor: str, address: str | None, data_dir: Path | None,
           workers: int | None) -> None:
    from userchoice.experiments.runner import iter_failures, run_experiment

    console = Console()
    runner = _runner(executor, address, workers)
    progress, update = _progress_bar(console, config.name)

    def warn(message: str) -> None:
        console.print(f"[yellow]warning:[/yellow] {message}")

    try:
        with progress:
            summary = run_experiment(config, out, runner=runner, data_dir=data_dir,
                                     progress=update, warn=warn)
    except (ValueError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    console.print(f"{summary.out}: {summary.done} done, {summary.diverged} diverged, "
                  f"{summary.failed} failed, {summary.skipped} already finished "
                  f"({summary.seconds:.1f} s)")
    for row in list(iter_failures(out))[:10]:
        console.print(f"  [yellow]{row['status']}[/yellow] run {row['run_id']}: {row['reason']}")
    if summary.failed or summary.diverged:
        raise typer.Exit(1)


Executor = Annotated[str, typer.Option(help="local (in-process) or ray.")]
Address = Annotated[str | None, typer.Option(help="Ray cluster address (default: start "
                                                  "a local Ray).")]
Workers = Annotated[int | None, typer.Option(
    min=1, help="Chunks run at once (local), or CPUs of the local Ray that --executor ray "
                "starts when no --address is given.")]


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment YAML.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: key.sub=value.")]
    = None,
    out: Annotated[Path | None, typer.Option(help="Results directory (default: "
                                                  "results/<name>).")] = None,
    executor: Executor = "local",
    address: Address = None,
    workers: Workers = None,
    data_dir: DataDir = None,
) -> None:
    """Run every run of an experiment config (finished runs in OUT are skipped)."""
    from userchoice.experiments.config import ConfigError
    from userchoice.experiments.paths import load_experiment

    try:
        cfg = load_experiment(config, set_ or [], data_dir=data_dir)
    except ConfigError as err:
        Console().print(f"[red]{err}[/red]")
        raise typer.Exit(2) from err
    _sweep(cfg, out or Path("results") / cfg.name, executor, address, data_dir, workers)


@app.command()
def resume(
    directory: Annotated[Path, typer.Argument(help="A results directory.")],
    executor: Executor = "local",
    address: Address = None,
    workers: Workers = None,
    data_dir: DataDir = None,
) -> None:
    """Finish the pending runs of a results directory (its config is in the manifest)."""
    from userchoice.experiments.config import ConfigError, config_from_dict
    from userchoice.experiments.store import ResultsDir

    try:  # a damaged manifest is a ValueError naming the file and how to recover
        manifest = ResultsDir(directory).read_manifest()
        cfg = config_from_dict(manifest["config"], str(directory / "manifest.json"))
    except (FileNotFoundError, ConfigError, ValueError) as err:
        Console().print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    _sweep(cfg, directory, executor, address, data_dir, workers)


@app.command("status")
def status_command(directory: Annotated[Path, typer.Argument(help="A results directory.")]
                   ) -> None:
    """Done / diverged / failed / pending runs of a results directory, and its damaged chunks
    (exit code 1 when there are any: `userchoice resume` computes them again)."""
    from rich.markup import escape

    from userchoice.experiments.runner import damaged_chunks, iter_failures, status

    console = Console()
    try:
        counts = status(directory)
        damaged = damaged_chunks(directory)
    except (FileNotFoundError, ValueError) as err:  # no or a damaged manifest
        console.print(f"[red]error:[/red] {escape(str(err))}")
        raise typer.Exit(2) from err
    console.print(f"{counts['name']}: {counts['total']} runs — {counts['done']} done, "
                  f"{counts['diverged']} diverged, {counts['failed']} failed, "
                  f"{counts['pending']} pending")
    for row in list(iter_failures(directory))[:10]:
        console.print(f"  {row['status']} run {row['run_id']}: {row['reason']}")
    if damaged:
        console.print(f"[red]{len(damaged)} damaged chunk(s)[/red] (their runs count as "
                      f"pending; `userchoice resume {escape(str(directory))}` computes them "
                      f"again):")
        for key, reason in sorted(damaged.items()):
            console.print(f"  damaged chunk {key}: {escape(reason)}")
        raise typer.Exit(1)


@app.command()
def plot(
    directory: Annotated[Path, typer.Argument(help="A results directory.")],
    out: Annotated[Path | None, typer.Option(help="Folder for the figures (default: "
                                                  "DIRECTORY/figures).")] = None,
) -> None:
    """Write every applicable figure (PNG and PDF) of a results directory."""
    from userchoice.plots import plot_results

    console = Console()
    try:
        paths = plot_results(directory, out)
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    console.print(f"{len(paths)} figure files written to {out or directory / 'figures'}")


@app.command()
def report(
    directories: Annotated[list[Path], typer.Argument(help="One or more results directories.")],
    out: Annotated[Path | None, typer.Option(help="HTML file (default: report.html in the "
                                                  "first directory).")] = None,
) -> None:
    """Write one self-contained HTML page: figures, tables, config, provenance."""
    from userchoice.report import write_report

    console = Console()
    target = out or directories[0] / "report.html"
    try:
        path = write_report(directories, target)
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    console.print(f"report written to {path}")


@app.command("reproduce")
def reproduce_command(
    target: Annotated[str, typer.Argument(
        help=f"paper (every experiment), a dataset ({', '.join(DATASETS.named())}) or nn.")],
    quick: Annotated[bool, typer.Option(help="CI-sized configs on the staged substitutes.")]
    = False,
    local: Annotated[bool, typer.Option(help="The paper's settings on the substitutes in "
                                             "../shared/data.")] = False,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: "
                                                  "results/reproduce-TARGET).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Only these experiments (repeat).")]
    = None,
    configs: Annotated[Path | None, typer.Option(help="Folder holding paper/, local/, quick/.")]
    = None,
    figures: Annotated[bool, typer.Option(help="Write figures.")] = True,
    executor: Executor = "local",
    address: Address = None,
    workers: Workers = None,
    data_dir: DataDir = None,
) -> None:
    """Run the paper's experiments, write figures and summary.md beside the paper's numbers."""
    import json

    from userchoice.experiments.config import ConfigError
    from userchoice.reproduce import ReproduceError, reproduce

    console = Console()
    runner = _runner(executor, address, workers)
    kind = "quick" if quick else "local" if local else "paper"
    dest = out or Path("results") / f"reproduce-{target}-{kind}"
    progress_bar, _ = _progress_bar(console, target)
    tasks: dict[str, int] = {}

    def progress(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = progress_bar.add_task(name, total=total)
        progress_bar.update(tasks[name], completed=done, total=total)

    failed = False
    try:
        with progress_bar:
            summary = reproduce(target, dest, quick=quick, local=local, runner=runner,
                                data_dir=data_dir, progress=progress, configs=configs,
                                only=only, figures=figures)
    except (ValueError, ConfigError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    except ReproduceError as err:
        console.print(f"[red]some experiments failed:[/red] {err}")
        summary, failed = dest / "summary.md", True
    record = dest / "reproduce.json"
    if record.is_file():
        runs = json.loads(record.read_text()).get("runs", {})
        failed = failed or any(v.get("failed", 0) or v.get("diverged", 0)
                               for v in runs.values() if isinstance(v, dict))
    console.print(f"summary written to {summary}")
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":  # last: every command above is registered by now
    app()
