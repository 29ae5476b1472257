"""The documentation pages run as doctests, so that they cannot drift from the code.

Every ``>>>`` example of the pages in ``PAGES`` runs (ELLIPSIS and NORMALIZE_WHITESPACE on) as a
reader who pastes them would run it: nothing is defined beforehand, and pictures go to the current
folder (a temporary one). ``python tests/test_docs.py`` runs the pages with ``TINYGAN_DOCS_OUT``
the docs folder itself, which redraws the committed pictures.
"""

from __future__ import annotations

import doctest
import os
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ("autograd.md", "exercises.md")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def run_page(page: str) -> doctest.TestResults:
    """Run the examples of ``docs/<page>`` in an empty namespace."""
    return doctest.testfile(str(DOCS / page), module_relative=False, globs={}, optionflags=FLAGS)


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("TINYGAN_DOCS_OUT", raising=False)
    monkeypatch.chdir(tmp_path)  # pasted: the pictures go to the current folder
    failed, attempted = run_page(page)
    assert attempted > 0, f"docs/{page} has no examples"
    assert failed == 0, f"{failed} of {attempted} examples of docs/{page} failed (see above)"


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_is_an_example(page):
    """A ```python block without ``>>>`` would never run: each one must be doctest lines."""
    for lang, body in FENCE.findall((DOCS / page).read_text()):
        if lang in ("python", "pycon"):
            first = body.lstrip().splitlines()[0] if body.strip() else ""
            assert first.startswith(">>> "), (
                f"docs/{page}: a python block not in >>> form: {body!r}"
            )


def test_pictures_the_pages_show_exist():
    for page in PAGES:
        for picture in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", (DOCS / page).read_text()):
            assert (DOCS / picture).is_file(), f"docs/{page} shows {picture}, which is not there"


if __name__ == "__main__":  # redraw the committed pictures
    os.environ["TINYGAN_DOCS_OUT"] = str(DOCS)
    results = [run_page(page) for page in PAGES]
    sys.exit(1 if any(r.failed for r in results) else 0)
