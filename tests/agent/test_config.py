"""Config validation: a bad config is an error that names the key."""

from __future__ import annotations

import copy

import pytest

from rapport_agent import config as configs
from rapport_agent.config import ConfigError
from tests.agent.conftest import config_data

BASE = config_data("https://api.rapport.example", "state.sqlite", "sqlite:///pos.sqlite")


def _with(change) -> dict:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def _error(data) -> str:
    with pytest.raises(ConfigError) as caught:
        configs.parse(data)
    return str(caught.value)


def test_the_example_and_the_fixture_are_valid(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text(configs.EXAMPLE)
    cfg = configs.load(path)
    assert cfg.sources[0].customers.rule("name.given") == "local"
    assert cfg.sources[0].customers.rule("email") == "latest"
    assert configs.parse(BASE).api.url == "https://api.rapport.example"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["api"].update(port=1), "api.port: unknown key"),
        (lambda d: d["api"].update(url="ftp://x"), "api.url"),
        (lambda d: d["sources"][0]["customers"]["fields"].update({"nickname": "nick"}), "sources.0.customers.fields"),
        (lambda d: d["sources"][0]["customers"]["owner"].update({"phone": "mine"}), "sources.0.customers.owner.phone"),
        (lambda d: d["sources"][0]["customers"]["owner"].update({"locale": "local"}), "locale"),
        (lambda d: d["sources"][0].pop("dsn"), "a sql source needs dsn"),
        (lambda d: d["sources"][0].update(dsn="mysql://x"), "sources.0.dsn"),
        (lambda d: d["sources"][0]["orders"].pop("currency"), "currency"),
        (lambda d: d["sources"][0]["orders"]["fields"].pop("total"), "must map 'total'"),
        (lambda d: d["sources"][0]["customers"].update(table="x; drop"), "sources.0.customers.table"),
        (lambda d: d["sources"].append(copy.deepcopy(d["sources"][0]) | {"name": "b"}), "prefix"),
        (lambda d: d.pop("api"), "api: missing"),
        (lambda d: d["sources"][0].update(kind="csv"), "a csv source needs folder"),
    ],
)
def test_a_bad_config_names_the_key(change, named):
    assert named in _error(_with(change))


def test_the_key_may_come_from_the_environment(monkeypatch):
    data = _with(lambda d: d["api"].pop("key"))
    cfg = configs.parse(data)
    monkeypatch.delenv(configs.KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match="RAPPORT_AGENT_KEY"):
        cfg.api_key()
    monkeypatch.setenv(configs.KEY_ENV, "rpk_env")
    assert cfg.api_key() == "rpk_env"
    assert "rpk_test" not in repr(configs.parse(BASE))  # the key is never shown


def test_a_missing_or_broken_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="rapport-agent init"):
        configs.load(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("[api\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        configs.load(tmp_path / "bad.toml")


def test_the_docs_example_is_valid():
    import re
    import tomllib
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "agent.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    cfg = configs.parse(tomllib.loads(block.group(1)))
    assert [s.kind for s in cfg.sources] == ["sql", "csv"]
