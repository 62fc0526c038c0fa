"""The two environment descriptions stay in step, and the two README commands exist."""

from __future__ import annotations

import re
import tomllib

from derainlib import REPO_ROOT

# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}


def _name_and_bound(requirement: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(>=\s*[0-9.]+)?\s*", requirement)
    assert match, f"cannot parse requirement {requirement!r}"
    return match.group(1).lower(), (match.group(2) or "").replace(" ", "")


def pyproject_packages() -> dict[str, str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    return dict(_name_and_bound(requirement) for requirement in requirements)


def environment_packages() -> dict[str, str]:
    """The conda dependency list, read line by line (the file is flat: one ``- name>=bound`` per line)."""
    text = (REPO_ROOT / "environment.yml").read_text()
    block = text.split("dependencies:", 1)[1]
    packages = {}
    for line in block.splitlines():
        match = re.fullmatch(r"\s+-\s+(\S+)\s*(#.*)?", line)
        if match:
            name, bound = _name_and_bound(match.group(1))
            packages[CONDA_TO_PYPI.get(name, name)] = bound
    packages.pop("python")
    return packages


def test_environment_yml_matches_pyproject():
    assert environment_packages() == pyproject_packages()


def test_environment_yml_uses_conda_forge():
    assert re.search(r"channels:\s*\n\s+-\s+conda-forge", (REPO_ROOT / "environment.yml").read_text())


def test_torch_is_not_pinned_to_the_local_cpu_wheel():
    # The machine's torch 2.13.0+cpu wheel cannot import torchvision (REFERENCE.md): never pin it.
    bound = pyproject_packages()["torch"]
    assert bound.startswith(">=") and "2.13.0" not in bound


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
    ci_commands = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
                   if line.strip() and not line.startswith("#") and not line.startswith("set ")
                   and not line.startswith("cd ")]
    assert ci_commands == ["make test"]
