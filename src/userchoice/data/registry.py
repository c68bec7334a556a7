"""The dataset registry: every dataset name is defined here, once.

An entry (``DatasetEntry``) says how to load a dataset and what the loader returns:

- ``kind="dataset"``: a ``Dataset`` (arrays, names, provenance); the experiment's
  ``market.preferences`` construction turns it into a market;
- ``kind="market"``: a ``Market`` with its own preferences (the synthetic ``trap`` and
  ``mixture`` markets).

``file_backed`` entries read files: the loader is called as ``loader(path, data_dir=...,
**options)`` (``path`` = the config's ``data.path``, None to search ``<data dir>/<name>/``); they
can be imported into the data directory (``userchoice data import``, which first checks the
whole file with the entry's ``verify`` (``(path) -> summary``, raising ``DataFormatError``), or,
without one, only decompresses it fully) and, when they have a ``fetch_plan``
(``(**options) -> list[Download]``), downloaded (``userchoice data fetch``).
``market_args`` names fields of the config's ``market`` section passed to the loader
(``mixture`` gets ``n_learners``). The loader's other keyword parameters are its options
(``data.options``); ``check_options`` rejects any other key, naming the allowed ones.

Loaders are import-path strings (``"userchoice.theory:trap_market"``), resolved when first
used: ``userchoice.data`` never imports the layers above it (market, preferences) at module
level, and naming a dataset does not import its loader's dependencies.

Your own dataset, without editing the package:

- ``DATASETS.register("mine", DatasetEntry("mine", load_mine, kind="market", ...))`` or
  ``register_dataset("mine", load_mine, kind="market", ...)``;
- ``DATASETS.register("mine", load_mine)`` or, in YAML, ``data: {dataset: mypkg.data:load_mine}``:
  a bare callable becomes an entry by convention: its ``kind`` attribute (``load_mine.kind =
  "market"``; default ``"dataset"``: it must return a ``Dataset``), ``file_backed`` if it takes
  ``data_dir``, ``market_args=("n_learners",)`` if it takes ``n_learners``, and the first line
  of its docstring as the description. A ``DatasetEntry`` object may also be named by import
  path. ``experiments.plan.build_market`` checks that what the loader returns matches its kind,
  so a loader that returns a ``Market`` without declaring ``kind = "market"`` is an error that
  says so, never a silent guess;
- an installed package's entry point in the group ``userchoice.dataset``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from userchoice.registry import Registry, RegistryError, import_object

Kind = Literal["dataset", "market"]
KINDS: tuple[str, ...] = ("dataset", "market")
MARKET_ARGS: tuple[str, ...] = ("n_learners",)  # market-section fields a loader may receive


class DatasetOptionError(ValueError):
    """An option the dataset's loader (or fetch plan) does not take; names the allowed ones."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _resolve(target: Callable[..., Any] | str, what: str) -> Callable[..., Any]:
    obj = import_object(target) if isinstance(target, str) else target
    if not callable(obj):
        raise RegistryError(f"{what} {target!r} is not callable")
    return obj


def _parameters(function: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: accept any option
        return {"kwargs": inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)}


def _keyword_names(params: Mapping[str, inspect.Parameter], reserved: set[str]
                   ) -> tuple[str, ...] | None:
    """Names a caller may pass by keyword, or None when ``**kwargs`` takes anything."""
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(name for name, p in params.items() if name not in reserved
                 and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                inspect.Parameter.KEYWORD_ONLY))


def _check_keys(keys: Any, allowed: tuple[str, ...] | None, reserved: Mapping[str, str],
                where: str, owner: str) -> None:
    """``where`` formats the key's label, e.g. ``"data.options.{key}"``."""
    for key in keys:
        label = where.format(key=key)
        if key in reserved:
            raise DatasetOptionError(key, f"{label} is not an option of {owner}: "
                                          f"{reserved[key]}")
        if allowed is not None and key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise DatasetOptionError(key, f"{label} is not an option of {owner}{hint} "
                                          f"Allowed: {', '.join(allowed) or '(none)'}")


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: its loader, what that returns, and what ``data fetch/import`` need."""

    name: str
    loader: Callable[..., Any] | str  # a callable or an import path "package.module:function"
    kind: Kind = "dataset"
    description: str = ""
    file_backed: bool = False  # loader(path, *, data_dir=..., **options)
    market_args: tuple[str, ...] = ()  # market-section fields passed to the loader
    path_options: tuple[str, ...] = ()  # options naming files (beyond the path-token defaults)
    fetch_plan: Callable[..., Any] | str | None = None  # (**options) -> list[fetch.Download]
    verify: Callable[..., Any] | str | None = None  # (path) -> summary; checked before import

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise RegistryError("a dataset name must be a non-empty string")
        if self.kind not in KINDS:
            raise RegistryError(f"dataset {self.name!r}: kind must be one of {list(KINDS)}, got "
                                f"{self.kind!r}")
        unknown = [a for a in self.market_args if a not in MARKET_ARGS]
        if unknown:
            raise RegistryError(f"dataset {self.name!r}: market_args {unknown} are not among "
                                f"{list(MARKET_ARGS)}")
        if not (callable(self.loader) or isinstance(self.loader, str)):
            raise RegistryError(f"dataset {self.name!r}: the loader must be a callable or an "
                                f"import path, got {self.loader!r}")

    @property
    def fetchable(self) -> bool:
        return self.fetch_plan is not None

    @property
    def importable(self) -> bool:
        """Whether ``userchoice data import`` takes its files (it reads files)."""
        return self.file_backed

    @property
    def loader_name(self) -> str:
        if isinstance(self.loader, str):
            return self.loader
        return f"{getattr(self.loader, '__module__', '?')}:" \
               f"{getattr(self.loader, '__qualname__', repr(self.loader))}"

    def load_function(self) -> Callable[..., Any]:
        """The loader itself (an import path is imported now)."""
        return _resolve(self.loader, f"dataset {self.name!r}: loader")

    def fetch_function(self) -> Callable[..., Any]:
        if self.fetch_plan is None:
            raise RegistryError(f"dataset {self.name!r} has no fetch plan")
        return _resolve(self.fetch_plan, f"dataset {self.name!r}: fetch plan")

    def verify_function(self) -> Callable[..., Any] | None:
        """The whole-file check ``data import`` runs (None: the entry declares none)."""
        if self.verify is None:
            return None
        return _resolve(self.verify, f"dataset {self.name!r}: verify")

    def _reserved(self) -> dict[str, str]:
        """Loader parameters that are not options, and where their value comes from."""
        reserved = {arg: f"it comes from market.{arg}" for arg in self.market_args}
        if self.file_backed:
            reserved["data_dir"] = "it comes from --data-dir / $USERCHOICE_DATA"
            positional = [name for name, p in _parameters(self.load_function()).items()
                          if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                        inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            if positional:
                reserved[positional[0]] = "the files come from data.path"
        return reserved

    def options(self) -> tuple[str, ...] | None:
        """The loader's option names (None: it takes any keyword)."""
        return _keyword_names(_parameters(self.load_function()), set(self._reserved()))

    def check_options(self, options: Mapping[str, Any],
                      where: str = "data.options.{key}") -> None:
        """Raise ``DatasetOptionError`` naming ``data.options.<key>`` for a key the loader does
        not take (with a did-you-mean and the allowed keys)."""
        _check_keys(options, self.options(), self._reserved(), where,
                    f"dataset {self.name!r} (loader {self.loader_name})")

    def fetch_options(self) -> tuple[str, ...] | None:
        return _keyword_names(_parameters(self.fetch_function()), set())

    def check_fetch_options(self, options: Mapping[str, Any]) -> None:
        _check_keys(options, self.fetch_options(), {}, "fetch option {key!r}",
                    f"the download of dataset {self.name!r}")

    def load(self, options: Mapping[str, Any] | None = None, *, path: Any = None,
             data_dir: Any = None, market_args: Mapping[str, Any] | None = None) -> Any:
        """Call the loader: options are checked first; ``path`` only for file-backed ones, where
        a file of ``path`` that does not exist is a ``DatasetNotFoundError`` naming the command
        that gets it (``fetch.missing_files_error``)."""
        options = dict(options or {})
        self.check_options(options)
        market_args = dict(market_args or {})
        missing = [a for a in self.market_args if a not in market_args]
        if missing:
            raise ValueError(f"dataset {self.name!r} needs {missing} from the market section")
        function = self.load_function()
        kwargs = {**{a: market_args[a] for a in self.market_args}, **options}
        if self.file_backed:
            # A named file that is missing: say which command gets it (``data fetch`` for a
            # file a download writes, else ``data import``), before the loader's bare error.
            from userchoice.data.fetch import missing_files_error

            error = missing_files_error(self.name, path, data_dir) if path is not None else None
            if error is not None:
                raise error
            return function(path, data_dir=data_dir, **kwargs)
        if path is not None:
            raise ValueError(f"data.path is set but dataset {self.name!r} reads no files "
                             f"(its loader {self.loader_name} takes no path)")
        return function(**kwargs)


def entry_from_loader(name: str, loader: Any) -> DatasetEntry:
    """A ``DatasetEntry`` for ``loader`` (an entry already, or a callable; see the module
    docstring for the conventions a bare callable follows)."""
    if isinstance(loader, DatasetEntry):
        return loader if loader.name == name else dataclasses.replace(loader, name=name)
    if not callable(loader):
        raise RegistryError(f"dataset {name!r}: {loader!r} is neither a DatasetEntry nor a "
                            f"loader (a callable returning a Dataset or a Market)")
    params = _parameters(loader)
    doc = inspect.getdoc(loader) or ""
    return DatasetEntry(
        name=name, loader=loader, kind=getattr(loader, "kind", "dataset"),
        description=doc.strip().splitlines()[0] if doc.strip() else "",
        file_backed="data_dir" in params,
        market_args=tuple(a for a in MARKET_ARGS if a in params),
        path_options=tuple(getattr(loader, "path_options", ())),
        fetch_plan=getattr(loader, "fetch_plan", None), verify=getattr(loader, "verify", None))


class DatasetRegistry(Registry[DatasetEntry]):
    """A ``Registry`` whose items are always ``DatasetEntry``: a bare loader registered (by
    name, import path or entry point) is wrapped by ``entry_from_loader``."""

    def register(self, name: str, obj: Any = None) -> Any:  # type: ignore[override]
        def add(item: Any) -> Any:
            entry = entry_from_loader(name, item)
            if self._items.get(name) != entry:  # an equal entry again is a no-op
                Registry.register(self, name, entry)
            return item

        return add if obj is None else add(obj)

    def _load_entry_points(self) -> None:
        super()._load_entry_points()
        for name, item in list(self._items.items()):
            if not isinstance(item, DatasetEntry):
                self._items[name] = entry_from_loader(name, item)

    def get(self, name: str) -> DatasetEntry:
        try:
            super().get(name)
        except RegistryError:
            raise
        except Exception as error:  # a user's module that fails to import, a malformed path
            raise RegistryError(f"dataset {name!r}: cannot load it ({type(error).__name__}: "
                                f"{error})") from None
        return self._items[name]

    def named(self, *, fetchable: bool = False, importable: bool = False) -> tuple[str, ...]:
        """Names registered by name (not by import path), optionally only those that
        ``data fetch`` / ``data import`` support."""
        return tuple(name for name, entry in self.items() if ":" not in name
                     and (not fetchable or entry.fetchable)
                     and (not importable or entry.importable))


DATASETS = DatasetRegistry("dataset")


def register_dataset(name: str, loader: Callable[..., Any] | str, *, kind: Kind = "dataset",
                     description: str = "", file_backed: bool = False,
                     market_args: tuple[str, ...] = (), path_options: tuple[str, ...] = (),
                     fetch_plan: Callable[..., Any] | str | None = None,
                     verify: Callable[..., Any] | str | None = None) -> DatasetEntry:
    """Register a dataset with every field explicit; returns its entry."""
    entry = DatasetEntry(name, loader, kind, description, file_backed, tuple(market_args),
                         tuple(path_options), fetch_plan, verify)
    DATASETS.register(name, entry)
    return entry


def get_dataset(name: str) -> DatasetEntry:
    """The entry for a registered name or an import path; ``RegistryError`` (a ValueError)
    names the known datasets and the closest match otherwise."""
    return DATASETS.get(name)


register_dataset(
    "census", "userchoice.data.census:load_census", file_backed=True,
    description="US Census ACS person records (PUMS) as a folktables task, e.g. ACSEmployment",
    fetch_plan="userchoice.data.fetch:census_plan", verify="userchoice.data.census:verify_file")
register_dataset(
    "movielens", "userchoice.data.movielens:load_movielens", file_backed=True,
    description="MovieLens ratings: x = MF user factors, y = ratings of the most-rated movies",
    fetch_plan="userchoice.data.fetch:movielens_plan",
    verify="userchoice.data.movielens:verify_file")
register_dataset(
    "amazon", "userchoice.data.amazon:load_amazon", file_backed=True,
    description="Amazon reviews: x = review-text embedding, y = 1[rating ≥ 4], by category",
    fetch_plan="userchoice.data.fetch:amazon_plan", verify="userchoice.data.amazon:verify_file")
register_dataset(
    "trap", "userchoice.theory:trap_market", kind="market",
    description="synthetic two-group regression market (the overspecialisation trap)")
register_dataset(
    "mixture", "userchoice.synthetic:gaussian_mixture_market", kind="market",
    market_args=("n_learners",),
    description="synthetic classification market: one Gaussian blob of users per learner")
register_dataset(
    "features", "userchoice.data.features:load_features", file_backed=True,
    description="your own feature matrix and labels (X.npy + y.npy, or one .npz), e.g. "
                "pretrained-network features of CIFAR-10",
    verify="userchoice.data.features:verify_file")
