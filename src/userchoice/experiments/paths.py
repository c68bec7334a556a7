"""Paths inside configs, the shipped configs, and ``load_experiment`` (``load_config`` plus
path resolution).

Why a module of its own, beside ``config.py``: ``config.py`` is the schema and the one YAML
reader, pure functions of the text (a config validates the same on any machine); resolving
paths depends on the machine (the data directory, the installed package, the config file's
folder). Keeping that here leaves the schema free of filesystem look-ups, and gives
``reproduce``, the CLI and the tests one place to import from.

``data.path`` (a string or a list) and the path-valued loader options (``PATH_OPTIONS``, plus
the dataset entry's own ``path_options``) may use ``${NAME}`` tokens:

- ``${DATA_DIR}``: the userchoice data directory (``--data-dir``, else ``$USERCHOICE_DATA``,
  else the platform's user data folder), where ``userchoice data fetch`` / ``data import`` put
  files: ``${DATA_DIR}/<dataset>/<file name>``;
- ``${SAMPLE_DATA}``: the small real data samples shipped inside the package
  (``userchoice/samples``; see the SOURCE.md there);
- ``${CONFIG_DIR}``: the folder of the config file;
- ``${SHARED_DATA}``: for your own configs that read a staged data folder:
  ``$USERCHOICE_SHARED_DATA``, else the nearest ``shared/data`` folder above the config file or
  the working directory (a checkout's ``../shared/data``). The shipped configs do not use it,
  so they run the same from a checkout, an installed wheel or a copy (``userchoice configs
  copy``).

Any other ``${NAME}`` is an error naming the field and these tokens: environment variables are
never expanded, so none of their values can reach ``manifest.json`` or a report.

``~`` is expanded, and a path that is still relative after that is taken relative to the
config file's folder (a relative path in a ``--set`` override: relative to the working
directory). Resolution happens when a config is loaded (``load_experiment``); the resolved,
absolute paths are what the results manifest records. A named file that does not exist is not
an error here (a config validates and plans without its data): loading the data raises
``DatasetNotFoundError`` with the command that gets the file; ``missing_data`` lists them
beforehand.

The shipped configs are package data, ``userchoice/configs/{paper,local,quick}/NAME.yaml``
(``CONFIG_SETS``), found through ``importlib.resources``; ``$USERCHOICE_CONFIGS`` or an explicit
folder (``--configs DIR``) replaces them. ``load_experiment("quick/census_good")`` (and so
``userchoice run quick/census_good``) reads a shipped config by its set and name, when no file
of that name exists.
"""

from __future__ import annotations

import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from userchoice.experiments.config import (
    ConfigError,
    ExperimentConfig,
    config_from_dict,
    read_yaml_file,
)

SHARED_DATA_ENV = "USERCHOICE_SHARED_DATA"
CONFIGS_ENV = "USERCHOICE_CONFIGS"
CONFIG_SETS = ("paper", "local", "quick")  # the shipped config sets (folders of YAML files)
PATH_OPTIONS = ("cache_dir",)  # data.options entries that name files or folders, any dataset
_TOKEN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
TOKENS = ("SHARED_DATA", "DATA_DIR", "CONFIG_DIR", "SAMPLE_DATA")  # the only ${NAME} allowed


def package_folder(name: str) -> Path:
    """A data folder of the installed package (``configs``, ``samples``), as a path."""
    folder = resources.files("userchoice").joinpath(name)
    if not isinstance(folder, Path):  # e.g. imported from a zip: no folder on disk to read
        raise FileNotFoundError(f"userchoice/{name} is not a folder on disk ({folder}); "
                                f"install the package as files (pip install userchoice)")
    return folder


def sample_data_dir() -> Path:
    """``${SAMPLE_DATA}``: the real data samples shipped inside the package."""
    return package_folder("samples")


def configs_root(explicit: str | Path | None = None) -> Path:
    """The folder holding the config sets (``paper/``, ``local/``, ``quick/``): ``explicit``
    (``--configs DIR``), else ``$USERCHOICE_CONFIGS``, else the configs shipped in the package."""
    if explicit is not None or os.environ.get(CONFIGS_ENV):
        given = explicit is not None
        root = Path(explicit if given else os.environ[CONFIGS_ENV]).expanduser()
        if not any((root / kind).is_dir() for kind in CONFIG_SETS):
            source = "--configs" if given else f"${CONFIGS_ENV}"
            raise FileNotFoundError(f"{root} (from {source}) has none of the config set "
                                    f"folders {', '.join(k + '/' for k in CONFIG_SETS)}")
        return root
    root = package_folder("configs")
    if not any((root / kind).is_dir() for kind in CONFIG_SETS):
        raise FileNotFoundError(f"the shipped experiment configs are missing from {root} (a "
                                f"broken install?); pass --configs DIR or set ${CONFIGS_ENV} "
                                f"to a folder holding {', '.join(k + '/' for k in CONFIG_SETS)}")
    return root


def list_configs(root: str | Path | None = None) -> dict[str, list[str]]:
    """The config names of each set (``configs_root(root)``), sorted."""
    base = configs_root(root)
    return {kind: sorted(p.stem for p in (base / kind).glob("*.yaml"))
            for kind in CONFIG_SETS if (base / kind).is_dir()}


def shipped_config(ref: str, root: str | Path | None = None) -> Path:
    """The file of ``SET/NAME`` (``quick/census_good``, ``.yaml`` optional) among the config
    sets; a ``ConfigError`` names the sets, or the closest names, otherwise."""
    text = str(ref).strip().removesuffix(".yaml")
    kind, _, name = text.partition("/")
    known = list_configs(root)
    if kind not in known or not name or "/" in name:
        raise ConfigError(f"{ref!r} is not SET/NAME of a shipped config (sets: "
                          f"{', '.join(known)}; e.g. quick/census_good; list them with "
                          f"`userchoice configs list`)")
    if name not in known[kind]:
        close = difflib.get_close_matches(name, known[kind], n=1)
        hint = f"; did you mean {kind}/{close[0]}?" if close else ""
        raise ConfigError(f"no config {name!r} in the {kind} set{hint} (list them with "
                          f"`userchoice configs list`)")
    return configs_root(root) / kind / f"{name}.yaml"


def config_file(path: str | Path) -> Path:
    """The YAML file ``path`` names: the file itself when it exists, else ``SET/NAME`` of a
    shipped config (``shipped_config``); a missing path that is neither is a ``ConfigError``
    saying both."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    kind = path.parts[0] if path.parts else ""
    if kind in CONFIG_SETS and len(path.parts) == 2:
        return shipped_config(path.as_posix())
    raise ConfigError(f"config file {path} does not exist (a shipped config is named SET/NAME, "
                      f"e.g. quick/census_good: see `userchoice configs list`)")


def find_shared_data(start: str | Path | None = None) -> Path:
    """``${SHARED_DATA}``: ``$USERCHOICE_SHARED_DATA``, else the nearest ``shared/data`` above
    ``start`` (a config's folder) or above the working directory."""
    if os.environ.get(SHARED_DATA_ENV):
        return Path(os.environ[SHARED_DATA_ENV]).expanduser()
    for origin in (start, Path.cwd()):
        if origin is None:
            continue
        for folder in (Path(origin).resolve(), *Path(origin).resolve().parents):
            candidate = folder / "shared" / "data"
            if candidate.is_dir():
                return candidate
    raise FileNotFoundError(f"no shared/data folder found above {start or 'the config'} or the "
                            f"working directory; set ${SHARED_DATA_ENV} to the folder holding "
                            f"the staged datasets (the shipped configs use ${{DATA_DIR}} and "
                            f"${{SAMPLE_DATA}} instead)")


def expand_path(text: str, *, base_dir: str | Path | None, where: str = "path",
                data_dir: str | Path | None = None) -> str:
    """One path with ``${NAME}`` tokens expanded, ``~`` expanded, made absolute against
    ``base_dir`` (the working directory when None)."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name == "SHARED_DATA":
            try:
                return str(find_shared_data(base_dir))
            except FileNotFoundError as error:
                raise ConfigError(f"{where}: cannot resolve ${{SHARED_DATA}}: {error}") from None
        if name == "DATA_DIR":
            from userchoice.data.common import data_dir as resolve

            return str(resolve(data_dir))
        if name == "SAMPLE_DATA":
            return str(sample_data_dir())
        if name == "CONFIG_DIR":
            if base_dir is None:
                raise ConfigError(f"{where}: ${{CONFIG_DIR}} needs a config file")
            return str(Path(base_dir).resolve())
        raise ConfigError(f"{where}: ${{{name}}} is not an allowed token; the allowed ones "
                          f"are {', '.join('${' + t + '}' for t in TOKENS)} (environment "
                          f"variables are not expanded; got {text!r})")

    path = Path(_TOKEN.sub(value, text)).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()).resolve() / path
    return str(path)


def _path_options(dataset: Any) -> tuple[str, ...]:
    """``PATH_OPTIONS`` plus those the dataset's registry entry declares (none for a name the
    registry does not know: validation reports that one)."""
    from userchoice.data.registry import get_dataset

    extra: tuple[str, ...] = ()
    if isinstance(dataset, str):
        try:
            extra = get_dataset(dataset).path_options
        except ValueError:
            pass
    return tuple(dict.fromkeys((*PATH_OPTIONS, *extra)))


def _resolve_data_section(data: dict[str, Any], base_dir: str | Path | None,
                          data_dir: str | Path | None) -> dict[str, Any]:
    data = dict(data)
    raw = data.get("path")
    if isinstance(raw, str):
        data["path"] = expand_path(raw, base_dir=base_dir, where="data.path", data_dir=data_dir)
    elif isinstance(raw, list):
        data["path"] = [expand_path(p, base_dir=base_dir, where=f"data.path[{i}]",
                                    data_dir=data_dir) if isinstance(p, str) else p
                        for i, p in enumerate(raw)]
    options = data.get("options")
    if isinstance(options, dict):
        options = dict(options)
        for key in _path_options(data.get("dataset")):
            if isinstance(options.get(key), str):
                options[key] = expand_path(options[key], base_dir=base_dir,
                                           where=f"data.options.{key}", data_dir=data_dir)
        data["options"] = options
    return data


def resolve_config_paths(config: ExperimentConfig, base_dir: str | Path | None = None,
                         data_dir: str | Path | None = None) -> ExperimentConfig:
    """The config with its data paths expanded and absolute (see the module docstring);
    relative paths are taken against ``base_dir`` (default: the working directory)."""
    if config.data is None:  # population dynamics on synthetic groups read no files
        return config
    data = _resolve_data_section(config.data.model_dump(), base_dir, data_dir)
    return config.model_copy(update={"data": type(config.data).model_validate(data)})


def load_experiment(path: str | Path, overrides: list[str] | None = None,
                    data_dir: str | Path | None = None) -> ExperimentConfig:
    """``load_config`` plus path resolution: the file's paths against its own folder, then
    those of ``overrides`` (``key=value``) against the working directory. ``path`` may name a
    shipped config as ``SET/NAME`` (``config_file``). The file is read by
    ``config.read_yaml_file`` (the package's one YAML reader, so ``eta: 1e-2`` is a number)."""
    path = config_file(path)
    raw = read_yaml_file(path)
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
        raw = {**raw, "data": _resolve_data_section(raw["data"], path.parent, data_dir)}
    config = config_from_dict(raw, str(path), overrides)
    return resolve_config_paths(config, None, data_dir) if overrides else config


def missing_data(config: ExperimentConfig, data_dir: str | Path | None = None) -> str | None:
    """What loading the config's data would report missing (a message naming each file of
    ``data.path`` that does not exist and the command that gets it), or None; a dataset that
    reads no files, or searches the data directory (``data.path: null``), is not checked."""
    from userchoice.data.fetch import missing_files_error
    from userchoice.data.registry import DATASETS

    if config.data is None or config.data.path is None or \
            not isinstance(config.data.dataset, str):
        return None
    try:
        entry = DATASETS.get(config.data.dataset)
    except ValueError:
        return None
    if not entry.file_backed:
        return None
    error = missing_files_error(entry.name, config.data.path, data_dir)
    return None if error is None else str(error)


def copy_config(source: str | Path, dest: str | Path, *, force: bool = False) -> Path:
    """Copy a config file (e.g. ``shipped_config("quick/census_good")``) to ``dest``: a folder
    (one that exists, or a new path not ending in ``.yaml``/``.yml``; the file keeps its name)
    or a file path. An existing file is kept (``FileExistsError``) unless ``force``. Written
    atomically."""
    from userchoice.atomic import atomic_write

    source = Path(source)
    dest = Path(dest).expanduser()
    if dest.is_dir() or (not dest.exists() and dest.suffix.lower() not in (".yaml", ".yml")):
        dest = dest / source.name
    if dest.exists() and not force:
        raise FileExistsError(f"{dest} exists; pass --force (force=True) to replace it")
    data = source.read_bytes()
    return atomic_write(dest, lambda out: out.write(data))
