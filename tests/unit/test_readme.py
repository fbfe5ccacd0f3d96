"""README.md stays true: every make target and every params.yaml section is documented."""

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
