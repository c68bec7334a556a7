"""The one registry type behind every pluggable kind."""

from __future__ import annotations

import pytest

from userchoice.registry import Registry, RegistryError, import_object


def test_register_get_and_did_you_mean():
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)

    @reg.register("beta")
    def beta():
        return 2

    assert reg.get("alpha") == 1 and reg.get("beta") is beta
    assert reg.names() == ("alpha", "beta") and "alpha" in reg and len(reg) == 2
    reg.register("alpha", 1)  # the same object again: a no-op
    with pytest.raises(RegistryError, match="widget 'alpha' is already registered"):
        reg.register("alpha", 3)
    with pytest.raises(RegistryError, match=r"unknown widget 'alpah'; did you mean 'alpha'\? "
                                            r"Known: \['alpha', 'beta'\]"):
        reg.get("alpah")
    reg.unregister("beta")
    assert not reg.is_known("beta")


def test_import_paths_resolve_once_and_errors_name_the_part():
    reg: Registry[object] = Registry("thing")
    got = reg.get("userchoice.families:Logistic")
    from userchoice.families import Logistic

    assert got is Logistic and "userchoice.families:Logistic" in reg
    assert import_object("userchoice.families.Squared").__name__ == "Squared"
    with pytest.raises(RegistryError, match="cannot import module 'no_such_mod'"):
        reg.get("no_such_mod:X")
    with pytest.raises(RegistryError, match="has no attribute 'Nope'"):
        reg.get("userchoice.families:Nope")
