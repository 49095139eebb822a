"""The emulator patches moto's internals (rapport/emulator.py): it checks at start that
each still has the shape relied on, and fails loudly, naming it and the pinned range."""
from __future__ import annotations

import sys
import tomllib
import types
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from rapport import emulator
from rapport.emulator import Internal, MotoMismatch

ROOT = Path(__file__).resolve().parents[2]


def _dev_requirement(name: str) -> Requirement:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    return next(r for r in map(Requirement, dev) if r.name == name)


def test_the_installed_moto_has_every_patched_internal():
    emulator.check_moto()  # raises MotoMismatch otherwise
    assert len(emulator.INTERNALS) >= 10


@pytest.mark.parametrize("name", ["moto", "chalice"])
def test_moto_and_chalice_are_pinned_with_an_upper_bound_the_lock_satisfies(name):
    req = _dev_requirement(name)
    assert any(s.operator == "<" for s in req.specifier), f"{name} has no upper bound: {req}"
    assert req.specifier.contains(version(name))


def test_the_pinned_range_named_in_errors_is_pyprojects():
    assert str(_dev_requirement("moto").specifier) == str(Requirement(f"moto{emulator.MOTO_PINNED}").specifier)


@pytest.fixture()
def changed_moto(monkeypatch):
    """A stand-in for a moto release whose internals moved."""
    module = types.ModuleType("moto_next")

    class Backend:
        def __init__(self) -> None:
            self.iterators = {}  # renamed from shard_iterators

        def get_records(self, shard_iterator: str, limit: int) -> dict:  # a parameter renamed
            return {}

    module.Backend = Backend
    monkeypatch.setitem(sys.modules, "moto_next", module)
    return module


def test_a_renamed_parameter_a_gone_attribute_and_a_changed_body_each_fail_by_name(changed_moto):
    internals = (
        Internal("moto_next.Backend.get_records", ("self", "iterator_arn", "limit")),
        Internal("moto_next.Backend.call_action", ("self",)),
        Internal("moto_next.Backend.__init__", source_has=("self.shard_iterators",)),
        Internal("moto_next.Backend.get_records", ("self", "shard_iterator")),  # this one still fits
    )
    with pytest.raises(MotoMismatch) as caught:
        emulator.check_moto(internals)
    message = str(caught.value)
    assert "moto_next.Backend.get_records has no parameter iterator_arn" in message
    assert "moto_next.Backend.call_action is gone" in message
    assert "moto_next.Backend.__init__ no longer uses self.shard_iterators" in message
    assert f"moto{emulator.MOTO_PINNED}" in message and version("moto") in message
    assert message.count("moto_next.") == 3


def test_start_refuses_a_changed_moto_before_serving(changed_moto, monkeypatch):
    import socket

    monkeypatch.setattr(emulator, "INTERNALS", (Internal("moto_next.Backend.call_action", ("self",)),))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MotoMismatch, match="moto_next.Backend.call_action is gone"):
        emulator.start(port)
    with socket.socket() as s:  # nothing was started on the port
        assert s.connect_ex(("127.0.0.1", port)) != 0
