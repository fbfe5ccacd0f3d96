"""Rename the template to a new project: package directory, imports, project name and every text reference.

The template-cleanup workflow runs this once in a repository created from the template.
"""

from __future__ import annotations

import keyword
import logging
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mlops_template.core.errors import UserError

log = logging.getLogger(__name__)
SKIP_DIRS = {".git", ".venv", "node_modules", ".dvc/cache", ".dvc/tmp", "__pycache__", ".pytest_cache", ".ruff_cache"}


@dataclass(frozen=True)
class Names:
    project: str  # distribution / repository style: my-model
    package: str  # import name: my_model


def names_for(raw: str) -> Names:
    """Project and package names for a repository name such as `Acme.Loan-Model` (-> acme-loan-model)."""
    project = re.sub(r"[^a-z0-9]+", "-", raw.strip().lower()).strip("-")
    package = project.replace("-", "_")
    if not project or not package.isidentifier() or keyword.iskeyword(package) or package[0].isdigit():
        raise UserError(f"--to {raw!r}: needs letters first, then letters, digits, '-' or '_' (e.g. loan-model)")
    return Names(project, package)


def current_names(root: Path) -> Names:
    """The names in use now: the project name in pyproject.toml and the one package under src/."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        raise UserError(f"{pyproject}: not found; run from the project root")
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"]
    packages = [p.parent.name for p in (root / "src").glob("*/__init__.py")]
    if len(packages) != 1:
        raise UserError(f"{root / 'src'}: expected exactly one package, found {packages or 'none'}")
    return Names(project, packages[0])


def project_files(root: Path) -> list[Path]:
    """Files to rewrite: what git tracks or would track, else every file outside caches and environments."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if listed.returncode == 0 and listed.stdout:
        candidates = [root / name for name in listed.stdout.split("\0") if name]
    else:
        candidates = [p for p in root.rglob("*") if p.is_file()]
    return [p for p in candidates if p.is_file() and not _skipped(p.relative_to(root))]


def _skipped(relative: Path) -> bool:
    text = relative.as_posix()
    return any(text == d or text.startswith(d + "/") or f"/{d}/" in f"/{text}" for d in SKIP_DIRS)


def rename(root: Path, to: str, dry_run: bool = False) -> dict[str, int]:
    """Rewrite references old -> new in every text file, then move src/<old> to src/<new>."""
    new, old = names_for(to), current_names(root)
    if new == old:
        raise UserError(f"the project is already named {old.project} ({old.package})")
    target = root / "src" / new.package
    if target.exists():
        raise UserError(f"{target} already exists; remove it or choose another name")
    # Longest first so that `mlops_template` is not half-replaced by a shorter pattern.
    pattern = re.compile("|".join(re.escape(s) for s in sorted({old.package, old.project}, key=len, reverse=True)))
    mapping = {old.package: new.package, old.project: new.project}
    changed = 0
    for path in project_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (images, models) carry no names to change
        updated = pattern.sub(lambda m: mapping[m.group(0)], text)
        if updated != text:
            changed += 1
            if not dry_run:
                path.write_text(updated, encoding="utf-8")
    if not dry_run:
        (root / "src" / old.package).rename(target)
        for stale in (root / "src").glob("*.egg-info"):
            shutil.rmtree(stale, ignore_errors=True)  # metadata of the old name; `make setup` rebuilds it
    log.info(
        "rename: %s (%s) -> %s (%s): %d files%s",
        old.project,
        old.package,
        new.project,
        new.package,
        changed,
        " (dry run)" if dry_run else "",
    )
    return {"files": changed}
