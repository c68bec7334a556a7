"""One small registry type for every pluggable kind (families, choice rules, sources, …).

A registry maps names to objects. ``get`` also accepts an import path ``"package.module:Name"``
(the form a YAML config uses for a plug-in that lives outside ``userchoice``): the module is
imported and the object registered under that path, so it resolves once. Installed packages
may also declare entry points in the group ``userchoice.<kind>`` (spaces as
underscores: ``userchoice.choice_rule``); those are loaded the first
time a name is not found.

    FAMILIES = Registry("family")

    @FAMILIES.register("logistic")
    class Logistic: ...

    FAMILIES.get("logistic")            # built in
    FAMILIES.get("mypkg.models:Hinge")  # from the user's own module
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown name or an import path that does not resolve; the message says what exists."""


def import_object(path: str) -> Any:
    """``"package.module:Name"`` (or ``"package.module.Name"``) → the object."""
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise RegistryError(f"{path!r} is not an import path of the form 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise RegistryError(f"cannot import module {module_name!r} (from {path!r}): {error}") \
            from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise RegistryError(f"module {module_name!r} has no attribute {attribute!r}") \
                from None
    return target


class Registry(Generic[T]):
    """Names → objects of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: Any = None) -> Any:
        """Register ``obj`` under ``name`` (or use as a decorator). Re-registering the same
        object is a no-op; a different object under a taken name is an error."""

        def add(item: T) -> T:
            if not isinstance(name, str) or not name:
                raise RegistryError(f"a {self.kind} name must be a non-empty string")
            existing = self._items.get(name)
            if existing is not None and existing is not item:
                raise RegistryError(f"{self.kind} {name!r} is already registered "
                                    f"({existing!r}); choose another name")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove a name (for tests and interactive sessions)."""
        self._items.pop(name, None)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        from importlib.metadata import entry_points

        for entry in entry_points(group=self.entry_point_group):
            if entry.name not in self._items:
                self._items[entry.name] = entry.load()

    @property
    def entry_point_group(self) -> str:
        """``userchoice.<kind>`` with spaces as underscores (``userchoice.choice_rule``)."""
        return "userchoice." + self.kind.replace(" ", "_")

    def get(self, name: str) -> T:
        """The object registered as ``name``, or the one an import path names."""
        if not isinstance(name, str):
            raise RegistryError(f"{self.kind} must be a name or an import path, got {name!r}")
        if name in self._items:
            return self._items[name]
        if ":" in name:
            return self.register(name, import_object(name))
        self._load_entry_points()
        if name in self._items:
            return self._items[name]
        close = difflib.get_close_matches(name, list(self._items), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise RegistryError(f"unknown {self.kind} {name!r}{hint} Known: {list(self._items)}, "
                            f"or an import path 'package.module:Name'")

    def is_known(self, name: str) -> bool:
        """Whether ``get(name)`` would succeed (imports an import path to find out)."""
        try:
            self.get(name)
        except RegistryError:
            return False
        return True

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._items.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._items)})"
