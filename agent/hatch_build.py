"""Carry the connector SDK and common/ in a built wheel only (see pyproject.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class SdkInclude(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version != "standard":
            return  # the editable install of the dev environment imports the repository's own
        repo = Path(self.root).resolve().parent
        build_data["force_include"].update(
            {
                str(repo / "connectors" / "__init__.py"): "connectors/__init__.py",
                str(repo / "connectors" / "sdk"): "connectors/sdk",
                str(repo / "common"): "common",
            }
        )
