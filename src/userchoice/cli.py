"""Command line: a thin typer layer over the library (``userchoice --help``; also
``python -m userchoice``; ``-h`` is ``--help`` everywhere; shell completion with
``--install-completion``).

Exit codes (``EXIT_CODES``, printed by ``--help``): 0 ok; 1 finished, but not everything
succeeded; 2 bad usage or input, including OS errors (disk full, read-only folder, no
permission, a folder where a file is expected, a name too long, …), which every command reports
as one line naming the path (``_Commands``), never a traceback; 130 interrupted.
"""

from __future__ import annotations

import errno
import json
import threading
import time
from pathlib import Path
from typing import Annotated, Any

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


# The exit codes every command uses; the top-level --help prints them.
EXIT_CODES = {
    0: "success",
    1: "finished, but not everything succeeded: runs failed or diverged, an experiment failed, "
       "a download failed, or (status) damaged chunks",
    2: "bad usage or input: an unknown option or value, an invalid config, missing data "
       "(the message names the command that gets it), a results folder of another sweep, "
       "an OS error (disk full, no permission, …)",
    130: "interrupted (Ctrl-C): committed chunks are kept; `userchoice resume DIR` goes on",
}


class _Commands(TyperGroup):
    """The command group: an ``OSError`` escaping any command (``run``, ``data import``, …)
    becomes ``os_error_message`` on stderr and exit code 2, not a traceback (result parts,
    manifests and data files are written by ``userchoice.atomic``: never left half-written);
    Ctrl-C is exit code 130, not click's 1 (which means some runs failed)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as error:
            if error.errno == errno.EPIPE:  # a closed pipe: typer's own handling
                raise
            typer.echo(os_error_message(error), err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: committed chunks are kept (userchoice resume DIR goes "
                       "on)", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    name="userchoice",
    help="Simulate ML markets where users choose among competing learners (MSGD, MSGD-P).",
    epilog="Exit codes:\n\n" + "\n\n".join(f"{code}: {meaning}" for code, meaning in
                                             EXIT_CODES.items()),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=_Commands,
)


def _escape(error: BaseException | str) -> str:
    from rich.markup import escape

    return escape(str(error))


def _error(console: Console, error: BaseException | str) -> None:
    """An error as one message: markup-escaped, and not wrapped by rich, so the paths and
    commands in it (e.g. the one that gets missing data) stay whole and copy-pasteable."""
    console.print(f"[red]error:[/red] {_escape(error)}", soft_wrap=True)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"userchoice {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_show_version, is_eager=True,
        help="Print the installed version and exit.")] = False) -> None:
    """Simulate ML markets where users choose among competing learners (MSGD, MSGD-P)."""


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
            _error(console, err)
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
        _error(console, err)
        raise typer.Exit(2) from err
    except DownloadError as err:
        console.print(f"[red]download failed:[/red] {_escape(err)}", soft_wrap=True)
        raise typer.Exit(1) from err
    for r in records:
        pinned = "verified against the published sha256" if r["pinned"] else \
            "no published checksum: archive and format checked, sha256 recorded"
        console.print(f"{r['status']}: {r['file']} ({r['bytes'] / 1e6:.1f} MB; {pinned}; "
                      f"sha256 {r['sha256'][:16]}…)")


@data_app.command("import")
def data_import(
    name: Annotated[str, typer.Argument(help=f"{_one_of(DATASETS.named(importable=True))}.")],
    paths: Annotated[list[Path], typer.Argument(
        metavar="PATH...", help="A local copy of the dataset file; features: X.npy y.npy "
                                "(or one .npz with arrays X, y).")],
    data_dir: DataDir = None,
    set_name: Annotated[str | None, typer.Option(
        "--name", help="features: the set's folder, <data dir>/features/NAME (default: "
                       "default).")] = None,
    link: Annotated[bool, typer.Option(help="Symlink instead of copying.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Import even a file that does not verify (replacing a copy in place)."
    )] = False,
) -> None:
    """Copy (or link) a local dataset file into the data directory, after verifying all of it
    (decompressed, every record parsed, ranges and columns checked). A file that does not
    verify is not imported and a copy already in place is kept, unless --force. A feature set
    (features X.npy y.npy --name NAME) goes to <data dir>/features/NAME/."""
    import warnings

    from rich.markup import escape

    from userchoice.data.common import data_dir as resolve
    from userchoice.data.common import sha256_file
    from userchoice.data.fetch import UnverifiedImportWarning, import_files

    name = _dataset_name(name)
    console = Console()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnverifiedImportWarning)
            targets = import_files(name, paths, set_name=set_name, root=data_dir, link=link,
                                   force=force)
    except (FileNotFoundError, ValueError) as err:  # DataFormatError is a ValueError
        _error(console, err)
        raise typer.Exit(2) from err
    for warning in caught:
        if issubclass(warning.category, UnverifiedImportWarning):
            console.print(f"[yellow]warning:[/yellow] {escape(str(warning.message))}")
    for path, target in zip(paths, targets, strict=True):
        console.print(f"imported {escape(str(path))} → {escape(str(target))} (sha256 "
                      f"{sha256_file(target)[:16]}…)", soft_wrap=True)
    folder = targets[0].parent
    if folder != resolve(data_dir) / name:  # a named set: the config snippet that reads it
        console.print(escape(f"config: data: {{dataset: {name}, path: ${{DATA_DIR}}/{name}/"
                             f"{folder.name}}}"), soft_wrap=True)


# ------------------------------------------------------------- the shipped configs (package data)
configs_app = typer.Typer(
    help="The experiment configs shipped with the package: list, show, copy. A shipped config "
         "also runs by its name: userchoice run quick/census_good.",
    no_args_is_help=True)
app.add_typer(configs_app, name="configs")

ConfigsDir = Annotated[Path | None, typer.Option(
    "--configs", file_okay=False,
    help="Folder holding paper/, local/, quick/ (default: $USERCHOICE_CONFIGS, else the "
         "configs shipped with the package).")]
ConfigRef = Annotated[str, typer.Argument(
    help="SET/NAME of a shipped config, e.g. quick/census_good.")]


def _shipped(ref: str, configs: Path | None) -> Path:
    from rich.markup import escape

    from userchoice.experiments.config import ConfigError
    from userchoice.experiments.paths import shipped_config

    try:
        return shipped_config(ref, configs)
    except (ConfigError, FileNotFoundError) as err:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(err))}")
        raise typer.Exit(2) from err


@configs_app.command("list")
def configs_list(configs: ConfigsDir = None) -> None:
    """List the config sets and their experiments (SET/NAME, dataset, description)."""
    from rich.markup import escape

    from userchoice.experiments.config import load_config
    from userchoice.experiments.paths import configs_root, list_configs

    try:
        root, sets = configs_root(configs), list_configs(configs)
    except FileNotFoundError as err:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(err))}")
        raise typer.Exit(2) from err
    console = Console()
    console.print(f"configs: {escape(str(root))}")
    table = Table()
    for column in ("config", "dataset", "description"):
        table.add_column(column, overflow="ellipsis", no_wrap=column != "description")
    for kind, names in sets.items():
        for i, name in enumerate(names):
            config = load_config(root / kind / f"{name}.yaml")
            dataset = (config.data.dataset if config.data is not None
                       else f"{config.population.groups.kind} groups" if config.population
                       else f"setting {config.equilibrium.setting}")
            table.add_row(f"{kind}/{name}", str(dataset),
                          escape(config.description.split(";")[0]),
                          end_section=i == len(names) - 1)
    console.print(table)


@configs_app.command("show")
def configs_show(
    ref: ConfigRef,
    path: Annotated[bool, typer.Option("--path", help="Print only the file's path.")] = False,
    configs: ConfigsDir = None,
) -> None:
    """Print a shipped config's YAML (or, with --path, where it is installed)."""
    file = _shipped(ref, configs)
    typer.echo(str(file) if path else file.read_text(encoding="utf-8"), nl=path)


@configs_app.command("copy")
def configs_copy(
    ref: ConfigRef,
    dest: Annotated[Path, typer.Argument(help="A folder (the file keeps its name) or a file.")]
    = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    configs: ConfigsDir = None,
) -> None:
    """Copy a shipped config out to edit it; the copy runs from anywhere (its data paths are
    ${DATA_DIR}/… and ${SAMPLE_DATA}/…, not relative to the package)."""
    from userchoice.experiments.paths import copy_config

    try:
        target = copy_config(_shipped(ref, configs), dest, force=force)
    except FileExistsError as err:
        Console(stderr=True).print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from err
    typer.echo(f"copied {ref} → {target}  (run it: userchoice run {target})")


def _progress(console: Console):
    """The one rich progress display: description, bar, percent, runs committed, elapsed, ETA
    (from the rate of run-steps, so it shows while the first chunks are still running)."""
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"),
                    BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[runs]}"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, transient=False)


class SweepView:
    """One sweep's progress on a rich ``Progress``: the phase in the description, each
    finished phase as a line with its seconds, then a bar of run-steps with the runs committed
    and an ETA. Its methods are ``run_experiment``'s ``phase``, ``progress`` and
    ``step_progress`` callbacks (``step_progress`` may come from worker threads: rich's
    updates take a lock)."""

    def __init__(self, progress: Any, name: str) -> None:
        self.bar, self.name = progress, name
        self.task = progress.add_task(f"{name}: starting", total=None, runs="")
        self.current: tuple[str, float] | None = None
        self.lock = threading.Lock()

    def phase(self, label: str) -> None:
        with self.lock:
            self._close_phase()
            self.current = (label, time.perf_counter())
        self.bar.update(self.task, description=f"{self.name}: {label}")

    def _close_phase(self) -> None:
        if self.current is not None:
            label, began = self.current
            self.bar.console.print(f"  {self.name}: {label} "
                                   f"[dim]({time.perf_counter() - began:.1f} s)[/dim]")
            self.current = None

    def progress(self, done: int, total: int) -> None:
        self.bar.update(self.task, runs=f"{done}/{total} runs")

    def step_progress(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=max(total, 1))

    def close(self, *, remove: bool = False) -> None:
        with self.lock:
            self._close_phase()
        if remove:
            self.bar.remove_task(self.task)
        else:
            self.bar.update(self.task, description=f"{self.name}: done")


def _runner(executor: str, address: str | None, workers: int | None):
    from userchoice.experiments.runner import local_runner

    if executor == "local":
        return local_runner(workers)
    if executor == "ray":
        from userchoice.experiments.ray_runner import ray_runner

        try:
            return ray_runner(address, num_cpus=workers)
        except ImportError as err:
            _error(Console(), err)
            raise typer.Exit(2) from err
    raise typer.BadParameter("must be 'local' or 'ray'", param_hint="--executor")


def _sweep(config, out: Path, executor: str, address: str | None, data_dir: Path | None,
           workers: int | None, reuse: list[Path] | None = None) -> None:
    from userchoice.experiments.runner import iter_failures, run_experiment

    console = Console()
    runner = _runner(executor, address, workers)

    def warn(message: str) -> None:
        console.print(f"[yellow]warning:[/yellow] {message}")

    try:
        with _progress(console) as bar:
            view = SweepView(bar, config.name)
            try:
                summary = run_experiment(config, out, runner=runner, data_dir=data_dir,
                                         progress=view.progress, warn=warn, phase=view.phase,
                                         step_progress=view.step_progress, reuse=reuse or ())
            finally:
                view.close()
    except (ValueError, FileNotFoundError) as err:
        _error(console, err)
        raise typer.Exit(2) from err
    console.print(f"{summary.out}: {summary.done} done, {summary.diverged} diverged, "
                  f"{summary.failed} failed, {summary.skipped} already finished"
                  + (f", {summary.reused} copied from --reuse" if summary.reused else "")
                  + f" ({summary.seconds:.1f} s)")
    for row in list(iter_failures(out))[:10]:
        console.print(f"  [yellow]{row['status']}[/yellow] run {row['run_id']}: {row['reason']}")
    _print_headline(console, headline(out))
    if summary.failed or summary.diverged:
        raise typer.Exit(1)


# ------------------------------------------------------------------------- headline results
def headline(directory: Path) -> dict[str, Any] | None:
    """The result ``run`` and ``status`` end with: the final primary metric per learner (mean,
    s.e. over seeds; per p when p varies) at the reference conditions of the other knobs and
    static values (``analysis.reference_conditions``), and the pooled baseline. Rows are
    ``analysis.final_summary``'s, unchanged. None when no run is done."""
    from userchoice.analysis import (
        at_conditions,
        final_summary,
        finite_number,
        load_results,
        reference_conditions,
    )

    res = load_results(directory)
    if res.metric is None:
        return None
    summary = final_summary(res)
    if not len(summary):
        return None
    reference = reference_conditions(summary, res.static_columns)
    rows = at_conditions(summary, reference)
    shown = {k: v for k, v in reference.items() if k in res.varying()}  # in the sweep
    has_p = "p" in rows and rows["p"].nunique() > 1
    records = []
    for row in rows.to_dict("records"):
        learner = int(row["learner"])
        records.append({**({"p": float(row["p"])} if has_p else {}), "learner": learner,
                        "label": res.learner_name(learner)
                        + (" (prober)" if bool(row["is_prober"]) else ""),
                        "is_prober": bool(row["is_prober"]),
                        "mean": finite_number(row["mean"]),
                        "sem": finite_number(row["sem"]), "n": int(row["n"])})
    return {"name": res.name, "metric": res.metric, "label": res.metric_label,
            "step": int(res.learners["step"].max()), "held": shown,
            "seeds": max((r["n"] for r in records), default=0),
            "baseline": res.baseline, "rows": records}


def _print_headline(console: Console, result: dict[str, Any] | None) -> None:
    from rich.markup import escape

    from userchoice.analysis import format_mean_se, format_number

    if result is None:
        console.print("no finished runs yet: no result to show")
        return
    held = ", ".join(f"{k} = {format_number(v)}" for k, v in result["held"].items())
    table = Table(title=escape(f"{result['name']}: final {result['label']} at step "
                               f"{result['step']} (mean ± s.e. over {result['seeds']} "
                               f"seed(s){', ' + held if held else ''})"),
                  title_justify="left")
    by_p = "p" in (result["rows"] or [{}])[0]
    labels = list(dict.fromkeys(r["label"] for r in result["rows"]))
    if by_p:
        table.add_column("p", justify="right")
    for label in labels:
        table.add_column(escape(label), justify="right")
    keys = list(dict.fromkeys(r.get("p") for r in result["rows"]))
    for key in keys:
        cells = {r["label"]: format_mean_se(r["mean"], r["sem"]) for r in result["rows"]
                 if r.get("p") == key}
        table.add_row(*([format_number(key)] if by_p else []),
                      *(cells.get(label, "–") for label in labels))
    console.print(table)
    if result["baseline"] is not None:
        console.print(f"pooled baseline (one learner fitted on all training users): "
                      f"{escape(result['label'])} {format_number(result['baseline'])}")


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _print_dry_run(console: Console, plan: Any) -> None:
    from rich.markup import escape

    mib = 2**20
    console.print(f"[bold]{escape(plan.name)}[/bold]: {plan.runs} runs in {len(plan.groups)} "
                  f"group(s); {plan.finished} already finished in {escape(str(plan.out))}, "
                  + (f"{plan.reusable} to copy from --reuse, " if plan.reusable else "")
                  + f"{plan.pending} to compute")
    for g in plan.groups:
        static = ", ".join(f"{k} = {v}" for k, v in g["static"].items())
        console.print(f"  group {g['index']}{' (' + escape(static) + ')' if static else ''}: "
                      f"{g['runs']} runs ({g['pending']} to compute), T = {g['steps']}, "
                      f"{g['evals']} evaluation points; {g['chunks']} chunk(s) of ≤ "
                      f"{g['chunk_size']} runs, {g['programs']} program(s) to compile; "
                      f"≈ {g['bytes_per_run'] / mib:.1f} MiB per run")
    console.print(f"compilations: {plan.compilations}; chunks: {plan.chunks} on "
                  f"{plan.workers} worker(s); memory ≈ {plan.peak_bytes / mib:.0f} MiB at once")
    setup = ", ".join(f"{k} {_duration(v)}" for k, v in plan.setup_seconds.items())
    console.print(f"time ≈ {_duration(plan.simulate_seconds)} simulating + ≈ "
                  f"{_duration(plan.compile_seconds)} compiling (time model fitted on 2 CPU "
                  f"cores, about ×2 either way; accelerators differ); setup measured: {setup}; "
                  f"ERM init and baseline not included")
    if plan.note:
        console.print(f"[yellow]note:[/yellow] {escape(plan.note)}")


Executor = Annotated[str, typer.Option(help="local (in-process) or ray.")]
Address = Annotated[str | None, typer.Option(help="Ray cluster address (default: start "
                                                  "a local Ray).")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Print what would be computed (groups, runs, chunks, compilations, "
                      "estimated memory and time) and exit; writes nothing.")]
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
    dry_run: DryRunOption = False,
    reuse: Annotated[list[Path] | None, typer.Option(
        help="Another results directory whose finished runs of this sweep (the same run id) "
             "are copied in, not computed; repeatable.")] = None,
) -> None:
    """Run every run of an experiment config (finished runs in OUT are skipped); ends with
    the final primary metric per learner and the pooled baseline."""
    from userchoice.experiments.config import ConfigError
    from userchoice.experiments.paths import load_experiment

    try:
        cfg = load_experiment(config, set_ or [], data_dir=data_dir)
    except ConfigError as err:
        Console().print(f"[red]{_escape(err)}[/red]", soft_wrap=True)
        raise typer.Exit(2) from err
    dest = out or Path("results") / cfg.name
    if dry_run:
        _dry_run(cfg, dest, data_dir, workers, reuse)
        return
    _sweep(cfg, dest, executor, address, data_dir, workers, reuse)


def _dry_run(cfg, dest: Path, data_dir: Path | None, workers: int | None,
             reuse: list[Path] | None = None) -> None:
    from userchoice.experiments.runner import dry_run

    console = Console()
    try:
        plan = dry_run(cfg, dest, data_dir=None if data_dir is None else str(data_dir),
                       workers=workers, reuse=reuse or ())
    except (ValueError, FileNotFoundError) as err:
        _error(console, err)
        raise typer.Exit(2) from err
    _print_dry_run(console, plan)
    console.print("dry run: nothing computed, nothing written")


@app.command("compare")
def compare_command(
    config: Annotated[Path, typer.Argument(help="Experiment YAML of a streaming market "
                                                "(dynamics msgd), or SET/NAME.")],
    dynamics: Annotated[str | None, typer.Option(
        help="Comma-separated dynamics to run the market under (msgd, population, "
             "equilibrium); default: every one the market admits.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override key.sub=value: engine.* goes to msgd, population.* and "
                      "equilibrium.* to theirs, a knob to every dynamics that reads it, the "
                      "rest to all.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: "
                                                  "results/<name>-compare).")] = None,
    figure: Annotated[bool, typer.Option(help="Write compare.png and compare.pdf.")] = True,
    executor: Executor = "local",
    address: Address = None,
    workers: Workers = None,
    data_dir: DataDir = None,
) -> None:
    """One market, every lens: run a streaming market under each dynamics it admits (each as
    OUT/configs/<dynamics>.yaml, results in OUT/<dynamics>/) and write one table (compare.csv)
    and figure of final global risk, market share and social loss side by side."""
    from userchoice.compare import compare, wide
    from userchoice.experiments.config import ConfigError
    from userchoice.experiments.paths import load_experiment

    console = Console()
    names = None if dynamics is None else [d.strip() for d in dynamics.split(",") if d.strip()]
    try:
        cfg = load_experiment(config, [], data_dir=data_dir)
        dest = out or Path("results") / f"{cfg.name}-compare"
        result = compare(cfg, dest, names, overrides=set_ or [], figure=figure,
                         sweep=lambda c, d: _sweep(c, d, executor, address, data_dir, workers))
    except ConfigError as err:
        console.print(f"[red]{_escape(err)}[/red]", soft_wrap=True)
        raise typer.Exit(2) from err
    table = wide(result.table)
    shown = Table(title=f"{cfg.name}: one market, every lens (final values, mean over seeds)",
                  title_justify="left")
    for column in table.columns:
        shown.add_column(str(column), justify="right")
    from userchoice.analysis import format_number

    for row in table.itertuples(index=False):
        shown.add_row(*[("market" if v == -1 else str(v)) if c == "learner"
                        else format_number(v) if isinstance(v, float) else str(v)
                        for c, v in zip(table.columns, row, strict=True)])
    console.print(shown)
    console.print("wrote " + ", ".join(str(f) for f in result.files))


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
        _error(Console(), err)
        raise typer.Exit(2) from err
    _sweep(cfg, directory, executor, address, data_dir, workers)


@app.command("status")
def status_command(
    directory: Annotated[Path, typer.Argument(help="A results directory.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object instead (keys: name, total, done, diverged, "
                       "failed, pending, damaged_chunks, failures, headline).")] = False,
) -> None:
    """Done / diverged / failed / pending runs of a results directory, its damaged chunks
    (exit code 1 when there are any: `userchoice resume` computes them again), and the
    final primary metric per learner with the pooled baseline."""
    from rich.markup import escape

    from userchoice.experiments.runner import damaged_chunks, iter_failures, status

    console = Console()
    try:
        counts = status(directory)
        damaged = damaged_chunks(directory)
        result = headline(directory)
    except (FileNotFoundError, ValueError) as err:  # no or a damaged manifest
        if as_json:
            typer.echo(json.dumps({"error": str(err)}))
        else:
            _error(console, err)
        raise typer.Exit(2) from err
    failures = [{"run_id": str(row["run_id"]), "status": str(row["status"]),
                 "reason": str(row["reason"])} for row in iter_failures(directory)]
    if as_json:
        typer.echo(json.dumps({**counts, "damaged_chunks": dict(sorted(damaged.items())),
                               "failures": failures, "headline": result}, indent=2))
        raise typer.Exit(1 if damaged else 0)
    console.print(f"{counts['name']}: {counts['total']} runs — {counts['done']} done, "
                  f"{counts['diverged']} diverged, {counts['failed']} failed, "
                  f"{counts['pending']} pending")
    for row in failures[:10]:
        console.print(f"  {row['status']} run {row['run_id']}: {escape(row['reason'])}")
    _print_headline(console, result)
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
    style: Annotated[str, typer.Option(help="screen, or paper: single-column 3.3 in figures, "
                                            "8 pt serif fonts, 300 dpi, no title (the caption "
                                            "carries it).")] = "screen",
    band: Annotated[str, typer.Option(help="Bands and error bars: se (mean ± standard error) "
                                           "or ci95 (95% t confidence interval).")] = "se",
    update_all: Annotated[bool, typer.Option(help="Draw the update-all copies as a "
                                                  "line.")] = False,
    reported: Annotated[bool, typer.Option(help="Mark the paper's reported values (the "
                                                "config's reported: block).")] = True,
    formats: Annotated[list[str] | None, typer.Option(
        "--format", help="png and/or pdf (repeat; default both).")] = None,
) -> None:
    """Write every applicable figure (PNG and PDF) of a results directory."""
    from userchoice.plots import FORMATS, plot_results

    console = Console()
    try:
        paths = plot_results(directory, out, formats=formats or FORMATS, style=style, band=band,
                             update_all=update_all, reported=reported)
    except (FileNotFoundError, ValueError) as err:
        _error(console, err)
        raise typer.Exit(2) from err
    console.print(f"{len(paths)} figure files written to {out or directory / 'figures'}")


@app.command()
def report(
    directories: Annotated[list[Path], typer.Argument(help="One or more results directories.")],
    out: Annotated[Path | None, typer.Option(help="HTML file (default: report.html in the "
                                                  "first directory).")] = None,
    band: Annotated[str, typer.Option(help="Figure bands: se (mean ± standard error) or "
                                           "ci95 (95% t confidence interval).")] = "se",
) -> None:
    """Write one self-contained HTML page: figures, tables, config, provenance."""
    from userchoice.report import write_report

    console = Console()
    target = out or directories[0] / "report.html"
    try:
        path = write_report(directories, target, band=band)
    except (FileNotFoundError, ValueError) as err:
        _error(console, err)
        raise typer.Exit(2) from err
    console.print(f"report written to {path}")


@app.command("reproduce")
def reproduce_command(
    target: Annotated[str, typer.Argument(
        help=f"paper (every experiment), a dataset ({', '.join(DATASETS.named())}) or nn.")],
    quick: Annotated[bool, typer.Option(help="CI-sized configs on real substitutes (the "
                                             "census ones on the ACS sample shipped with the "
                                             "package: no download).")]
    = False,
    local: Annotated[bool, typer.Option(help="The paper's settings on the substitutes (census: "
                                             "the shipped sample; MovieLens 100K, Amazon "
                                             "sample: in the data directory).")] = False,
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
    dry_run: DryRunOption = False,
) -> None:
    """Run the paper's experiments, write figures and summary.md beside the paper's numbers."""

    from userchoice.experiments.config import ConfigError
    from userchoice.reproduce import ReproduceError, reproduce

    console = Console()
    kind = "quick" if quick else "local" if local else "paper"
    dest = out or Path("results") / f"reproduce-{target}-{kind}"
    if dry_run:
        _reproduce_dry_run(console, target, kind, dest, configs, only, data_dir, workers)
        return
    runner = _runner(executor, address, workers)
    views: dict[str, SweepView] = {}
    failed = False
    try:
        with _progress(console) as bar:
            overall = bar.add_task(f"reproduce {target}: experiments", total=None, runs="")

            def view(name: str) -> SweepView:
                if name not in views:
                    views[name] = SweepView(bar, name)
                return views[name]

            def experiments(done: int, total: int) -> None:
                for finished in views.values():
                    finished.close(remove=True)
                views.clear()
                bar.update(overall, completed=done, total=total,
                           runs=f"{done}/{total} experiments")

            def phase(name: str, label: str) -> None:
                if name == target and label == "figures and summary":
                    bar.update(overall, description=f"reproduce {target}: {label}")
                else:
                    view(name).phase(label)

            summary = reproduce(
                target, dest, quick=quick, local=local, runner=runner, data_dir=data_dir,
                progress=lambda name, done, total: view(name).progress(done, total),
                configs=configs, only=only, figures=figures, phase=phase,
                step_progress=lambda name, done, total: view(name).step_progress(done, total),
                experiments=experiments)
    except (ValueError, ConfigError, FileNotFoundError) as err:
        _error(console, err)
        raise typer.Exit(2) from err
    except ReproduceError as err:
        console.print(f"[red]some experiments failed:[/red] {_escape(err)}",
                      soft_wrap=True)
        summary, failed = dest / "summary.md", True
    record = dest / "reproduce.json"
    if record.is_file():
        runs = json.loads(record.read_text()).get("runs", {})
        failed = failed or any(v.get("failed", 0) or v.get("diverged", 0)
                               for v in runs.values() if isinstance(v, dict))
    console.print(f"summary written to {summary}")
    if failed:
        raise typer.Exit(1)


def _reproduce_dry_run(console: Console, target: str, kind: str, dest: Path,
                       configs: Path | None, only: list[str] | None, data_dir: Path | None,
                       workers: int | None) -> None:
    """``reproduce --dry-run``: each experiment's dry run, the totals, and for each one that
    cannot be planned (data missing, …) the reason, which names the command that gets it."""
    from rich.markup import escape

    from userchoice.experiments.paths import load_experiment
    from userchoice.experiments.runner import dry_run
    from userchoice.reproduce import select_configs

    try:
        paths = select_configs(target, kind, configs, only)
    except (ValueError, FileNotFoundError) as err:
        _error(console, err)
        raise typer.Exit(2) from err
    plans, problems = [], {}
    for path in paths:
        try:
            config = load_experiment(path, data_dir=data_dir)
            plans.append(dry_run(config, dest / config.name, workers=workers,
                                 data_dir=None if data_dir is None else str(data_dir)))
        except (ValueError, FileNotFoundError) as err:
            problems[path.stem] = str(err)
            continue
        _print_dry_run(console, plans[-1])
    for name, problem in problems.items():
        # not wrapped by rich: the command that gets missing data stays copy-pasteable
        console.print(f"[red]{escape(name)}: cannot run:[/red] {escape(problem)}",
                      soft_wrap=True)
    console.print(
        f"[bold]total[/bold]: {len(paths)} experiment(s), {len(problems)} not ready; "
        f"{sum(p.runs for p in plans)} runs ({sum(p.pending for p in plans)} to compute), "
        f"{sum(p.compilations for p in plans)} compilations, {sum(p.chunks for p in plans)} "
        f"chunks; time ≈ {_duration(sum(p.simulate_seconds + p.compile_seconds for p in plans))}"
        f" simulating and compiling (setup not included)")
    console.print("dry run: nothing computed, nothing written")
    if problems:
        raise typer.Exit(1)


if __name__ == "__main__":  # last: every command above is registered by now
    app()
