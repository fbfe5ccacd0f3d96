"""README.md stays true: every make target and every params.yaml section is documented; SECURITY.md's tests exist."""

import re

import yaml

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_make_target_is_in_the_readme():
    targets = re.findall(r"^([a-zA-Z_-]+):.*## ", (ROOT / "Makefile").read_text(), flags=re.M)
    assert len(targets) > 10
    missing = [t for t in targets if f"`make {t}" not in README]
    assert not missing, f"README.md does not mention: {missing}"


def test_every_params_section_is_in_the_readme():
    sections = yaml.safe_load((ROOT / "params.yaml").read_text())
    missing = [s for s in sections if f"`{s}." not in README and f"`{s}`" not in README]
    assert not missing, f"README.md does not document params.yaml sections: {missing}"


def test_every_test_security_md_names_exists():
    """The threat table names its proof as tests/...py::test_name: each must be a test function of that file."""
    named = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", (ROOT / "SECURITY.md").read_text())
    assert len(named) >= 10
    missing = [f"{path}::{name}" for path, name in named
               if not re.search(rf"^def {name}\(", (ROOT / path).read_text(), flags=re.M)]  # fmt: skip
    assert not missing, f"SECURITY.md names tests that do not exist: {missing}"
