"""The client package as a user installs it: `pip install './clients/python[agno,openai-agents,langchain]'` into a
fresh venv (uv from the project venv, through the package registry and uv's cache), then every module imported
there. The framework versions are the ones the integration tests run (requirements-dev.lock as constraints)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")

CHECK = """
import importlib.metadata, importlib.resources, pathlib, sys
import sessionctx_client, sessionctx_client.handoff, sessionctx_client.types
import sessionctx_client.agno, sessionctx_client.langchain, sessionctx_client.openai_agents
assert pathlib.Path(sessionctx_client.__file__).is_relative_to(sys.prefix), sessionctx_client.__file__
assert importlib.resources.files("sessionctx_client").joinpath("py.typed").is_file()
print(importlib.metadata.version("sessionctx-client"), sessionctx_client.__version__,
      *(importlib.metadata.version(name) for name in ("agno", "openai-agents", "langchain-core")))
"""


def run(*command: object, timeout: float) -> str:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout,
                          cwd="/")
    assert done.returncode == 0, f"{command[:3]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.install
def test_the_package_installs_with_all_three_extras_in_a_fresh_venv_and_every_module_imports(tmp_path):
    # A copy, so the build never writes into the checkout (nor races another run's build there).
    package = shutil.copytree(ROOT / "clients" / "python", tmp_path / "client",
                              ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    run(UV, "venv", "-q", "--python", sys.executable, venv, timeout=60)
    python = venv / "bin" / "python"
    run(UV, "pip", "install", "-q", "--python", python, "--constraint", ROOT / "requirements-dev.lock",
        f"{package}[agno,openai-agents,langchain]", timeout=600)

    versions = run(python, "-c", CHECK, timeout=120).split()

    pinned = {line.split("==")[0]: line.split("==")[1].split()[0]
              for line in (ROOT / "requirements-dev.lock").read_text().splitlines() if "==" in line}
    assert versions == ["1.0.0", "1.0.0", pinned["agno"], pinned["openai-agents"], pinned["langchain-core"]]
