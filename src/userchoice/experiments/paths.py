"""Paths inside configs, and ``load_experiment`` (``load_config`` plus path resolution).

Why a module of its own, beside ``config.py``: ``config.py`` is the schema and the one YAML
reader, pure functions of the text (a config validates the same on any machine); resolving
paths depends on the machine (environment variables, the config file's folder, the data
directory, a ``shared/data`` folder somewhere above). Keeping that here leaves the schema free
of filesystem look-ups, and gives ``reproduce``, the CLI and the tests one place to import
from.

``data.path`` (a string or a list) and the path-valued loader options (``PATH_OPTIONS``, plus
the dataset entry's own ``path_options``) may use ``${NAME}`` tokens:

- ``${SHARED_DATA}``: ``$USERCHOICE_SHARED_DATA``, else the nearest ``shared/data`` folder
  above the config file (or above this package): ``../shared/data`` beside a checkout;
- ``${DATA_DIR}``: the userchoice data directory (``--data-dir``, ``$USERCHOICE_DATA``, …);
- ``${CONFIG_DIR}``: the folder of the config file.

Any other ``${NAME}`` is an error naming the field and these tokens: environment variables are
never expanded, so none of their values can reach ``manifest.json`` or a report.

``~`` is expanded, and a path that is still relative after that is taken relative to the
config file's folder (a relative path in a ``--set`` override: relative to the working
directory). Resolution happens when a config is loaded (``load_experiment``); the resolved,
absolute paths are what the results manifest records.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from userchoice.experiments.config import (
    ConfigError,
    ExperimentConfig,
    config_from_dict,
    read_yaml_file,
)

SHARED_DATA_ENV = "USERCHOICE_SHARED_DATA"
PATH_OPTIONS = ("cache_dir",)  # data.options entries that name files or folders, any dataset
_TOKEN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
TOKENS = ("SHARED_DATA", "DATA_DIR", "CONFIG_DIR")  # the only ${NAME} a path may use


def find_shared_data(start: str | Path | None = None) -> Path:
    """``$USERCHOICE_SHARED_DATA``, else the nearest ``shared/data`` above ``start`` or above
    this package (a checkout's ``../shared/data``)."""
    if os.environ.get(SHARED_DATA_ENV):
        return Path(os.environ[SHARED_DATA_ENV]).expanduser()
    for origin in (start, Path(__file__).resolve().parent):
        if origin is None:
            continue
        for folder in (Path(origin).resolve(), *Path(origin).resolve().parents):
            candidate = folder / "shared" / "data"
            if candidate.is_dir():
                return candidate
    raise FileNotFoundError(f"no shared/data folder found above {start or 'the package'}; set "
                            f"${SHARED_DATA_ENV} to the folder holding the staged datasets")


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
    data = _resolve_data_section(config.data.model_dump(), base_dir, data_dir)
    return config.model_copy(update={"data": type(config.data).model_validate(data)})


def load_experiment(path: str | Path, overrides: list[str] | None = None,
                    data_dir: str | Path | None = None) -> ExperimentConfig:
    """``load_config`` plus path resolution: the file's paths against its own folder, then
    those of ``overrides`` (``key=value``) against the working directory. The file is read by
    ``config.read_yaml_file`` (the package's one YAML reader, so ``eta: 1e-2`` is a number)."""
    path = Path(path)
    raw = read_yaml_file(path)
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
        raw = {**raw, "data": _resolve_data_section(raw["data"], path.parent, data_dir)}
    config = config_from_dict(raw, str(path), overrides)
    return resolve_config_paths(config, None, data_dir) if overrides else config
