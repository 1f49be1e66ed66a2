"""The documentation site builds strictly, and its layout page names the files that exist.

`mkdocs build --strict` fails on a broken link, a page missing from the nav, a docstring that
documents a parameter the function no longer has, or an API reference to a module that is gone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()
    reference = (tmp_path / "site" / "reference" / "model" / "index.html").read_text(encoding="utf-8")
    assert "U2Net" in reference and "ConvBNReLU" in reference  # the API reference really came from the docstrings


def _layout_paths() -> list[str]:
    text = (REPO_ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    block = re.search(r"```\n(.*?)```", text, re.S).group(1)
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def test_the_layout_page_matches_the_files():
    paths = _layout_paths()
    missing = [p for p in paths if not (REPO_ROOT / p).exists()]
    assert not missing, f"docs/layout.md names files that do not exist: {missing}"
    named = {p.rstrip("/") for p in paths}
    package = REPO_ROOT / "u2net_hub"
    modules = [f"u2net_hub/{p.name}" for p in sorted(package.glob("*.py"))]
    modules += [f"u2net_hub/{p.name}" for p in sorted(package.iterdir()) if (p / "__init__.py").is_file()]
    unnamed = [m for m in modules if m not in named]
    assert not unnamed, f"add a line for each of these to the layout block of docs/layout.md: {unnamed}"


def test_the_readme_fits_on_a_page_and_links_only_to_files_that_exist():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) < 12_000
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (REPO_ROOT / target).exists(), target
