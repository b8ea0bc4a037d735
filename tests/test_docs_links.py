"""Every relative link of the README and of docs/*.md names a file or folder of this repository
(links that leave it, such as ../shared/MATH.md beside a checkout, are not checked)."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:|#", target):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if path.is_relative_to(REPO.resolve()) and not path.exists():
            missing.append(target)
    assert not missing, f"{page.name}: {missing}"
