"""The README and the documentation pages, checked so that they cannot drift from the code.

Every fenced block of every page is checked:

- ``python`` blocks are ``>>>`` examples, run as doctests (ELLIPSIS and NORMALIZE_WHITESPACE on)
  as a reader who pastes them would run them: nothing is defined beforehand, and pictures go to
  the current folder (a temporary one). The one exception is a file the page asks you to write
  (first line ``# <name>.py``): a test here runs it, with the ``text`` block that shows its output
  and the ``diff`` block that fixes it.
- ``bash`` blocks: every ``python examples/<x>.py ...`` and ``python bench/<x>.py ...`` command
  line is parsed by that script's own argument parser (its ``parse_args`` is stopped before the
  script does anything else), every path they name into the repository exists, and every
  ``pip install`` extra is one that setup.cfg defines. Nothing is trained.

Links and pictures must point at files (and headings) that exist, and docs/layout.md must name
every module. ``python tests/test_docs.py`` runs the pages with ``TINYGAN_DOCS_OUT`` the docs
folder itself, which redraws the committed pictures.
"""

from __future__ import annotations

import argparse
import configparser
import doctest
import importlib.util
import os
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
from hypothesis import Phase, settings

import tinygan as tg

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ("README.md", *sorted(f"docs/{page.name}" for page in DOCS.glob("*.md")))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_BLOCK = re.compile(r"# (\w+\.py)\n")
FILES = {"docs/gradcheck.md": "test_softmax.py"}  # pages that ask you to write a file
REPO_PATH = re.compile(r"^(examples|bench|tests|docs|tinygan|\.ci)/")
FINISHED_RUN = ("checkpoint.npz", "history.json", "metrics.json")  # what a run folder holds
PARSE_ARGS = argparse.ArgumentParser.parse_args
READS_ARGUMENTS = re.compile(r"\.parse_args\(|\bcli\.(parse|run)\(")  # a script's parser runs


def blocks(page: str) -> list[tuple[str, str]]:
    """The fenced blocks of ``page`` (a path from the repository root): (language, text)."""
    return FENCE.findall((ROOT / page).read_text())


def run_page(page: str) -> doctest.TestResults:
    """Run the ``>>>`` examples of ``page`` in an empty namespace."""
    return doctest.testfile(str(ROOT / page), module_relative=False, globs={}, optionflags=FLAGS)


# ---- python blocks: doctests -------------------------------------------------------------------
@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(lang == "python" for lang, _ in blocks(p))]
)
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("TINYGAN_DOCS_OUT", raising=False)
    monkeypatch.chdir(tmp_path)  # pasted: the pictures go to the current folder
    failed, attempted = run_page(page)
    assert attempted > 0, f"{page} has python blocks but no examples"
    assert failed == 0, f"{failed} of {attempted} examples of {page} failed (see above)"


@pytest.mark.parametrize("page", PAGES)
def test_every_block_is_checked(page):
    """A block that no test reads could say anything: each is an example, a command line, or a
    file (with its output and fix) that a test here runs."""
    for lang, body in blocks(page):
        if lang == "bash" or (lang == "python" and body.startswith(">>> ")):
            continue
        written = FILE_BLOCK.match(body)
        run = page in FILES and (lang in ("text", "diff") or (lang == "python" and written))
        assert run and (lang != "python" or written[1] == FILES[page]), (
            f"{page}: a block ({lang or 'no language'}) that no test runs (python blocks are >>> "
            f"examples): {body[:200]!r}"
        )


# ---- bash blocks: command lines ----------------------------------------------------------------
def command_lines(markdown: str) -> list[list[str]]:
    """The commands of the bash blocks of ``markdown``, as argument lists: lines continued with
    ``\\`` joined, comments dropped, ``NAME="..."`` assignments substituted for ``$NAME``, and each
    line split at ``&&``, ``||``, ``;`` and ``|``."""
    commands = []
    for lang, body in FENCE.findall(markdown):
        if lang != "bash":
            continue
        variables: dict[str, str] = {}
        for line in body.replace("\\\n", " ").splitlines():
            for name, value in variables.items():
                line = line.replace(f"${name}", value)
            words = shlex.split(line, comments=True)
            if len(words) == 1 and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                name, value = words[0].split("=", 1)
                variables[name] = value
                continue
            command: list[str] = []
            for word in [*words, ";"]:
                if word in ("&&", "||", ";", "|"):
                    commands += [command] if command else []
                    command = []
                else:
                    command.append(word)
    return commands


class Parsed(Exception):
    """Raised by the stopped ``parse_args``: the command line parsed."""


def parse(script: Path, args: list[str], monkeypatch) -> argparse.Namespace:
    """Run ``script`` as ``python script *args`` until its parser has parsed the arguments (in
    full: an abbreviated flag is refused)."""

    def parse_args(self, args=None, namespace=None):
        self.allow_abbrev = False
        raise Parsed(PARSE_ARGS(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.syspath_prepend(str(script.parent))  # scripts import their neighbours
    modules, environ = set(sys.modules), dict(os.environ)
    try:
        runpy.run_path(str(script), run_name="__main__")
    except Parsed as parsed:
        return parsed.args[0]
    except SystemExit as e:
        pytest.fail(f"{script.name} {shlex.join(args)}: refused (exit status {e.code})")
    finally:  # the scripts' neighbours and settings must not leak into the next one
        for name in set(sys.modules) - modules:
            if Path(getattr(sys.modules[name], "__file__", None) or "/").parent == script.parent:
                del sys.modules[name]
        os.environ.clear()
        os.environ.update(environ)
    pytest.fail(f"{script.name} {shlex.join(args)}: ended without parsing its arguments")


def extras() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return set(config["options.extras_require"])


@pytest.mark.parametrize("page", [p for p in PAGES if any(lang == "bash" for lang, _ in blocks(p))])
def test_command_lines_name_what_exists_and_parse(page, tmp_path, monkeypatch):
    """Each script a page runs takes the flags the page gives it, with values its parser accepts.
    The commands run from a checkout in ``tmp_path``: ``../shared/data`` is a folder there, and
    so is each ``runs/...`` folder they name, holding what a finished run holds."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    monkeypatch.chdir(checkout)
    for command in command_lines((ROOT / page).read_text()):
        words = [w for w in command if not re.fullmatch(r"[A-Z_]+=.*", w)]  # no env settings
        for word in words:
            if REPO_PATH.match(word):
                path = word.split("::")[0]
                assert (ROOT / path).exists(), f"{page}: `{shlex.join(command)}` names {path}"
            if word.startswith("runs/"):
                (checkout / word).mkdir(parents=True, exist_ok=True)
                for name in FINISHED_RUN:
                    (checkout / word / name).touch()
            for wanted in re.findall(r"^\.\[([\w,]+)\]$", word) if "pip" in words else []:
                unknown = set(wanted.split(",")) - extras()
                assert not unknown, f"{page}: `{shlex.join(command)}`: no extra {unknown}"
        python = [i for i, w in enumerate(words[:-1]) if w in ("python", "python3")]
        if not python or not re.match(r"(examples|bench)/\w+\.py$", words[python[0] + 1]):
            continue
        script, args = ROOT / words[python[0] + 1], words[python[0] + 2 :]
        if not READS_ARGUMENTS.search(script.read_text()):
            assert not args, f"{page}: {script.name} takes no arguments; given {args}"
            continue
        parse(script, args, monkeypatch)


# ---- the file a page asks you to write: docs/gradcheck.md's test_softmax.py --------------------
def load_file(path: Path, text: str):
    """Write ``text`` to ``path`` and import it, as pytest would."""
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"docs_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gradcheck_page_softmax_fails_as_shown_and_passes_once_fixed(tmp_path):
    page = "docs/gradcheck.md"
    found = {lang: body for lang, body in blocks(page) if lang in ("text", "diff")}
    (written,) = [b for lang, b in blocks(page) if lang == "python" and FILE_BLOCK.match(b)]
    shown = " ".join(re.sub(r"^E +", "", found["text"], flags=re.MULTILINE).split())
    removed, added = (line[1:] for line in found["diff"].splitlines())
    search = settings(max_examples=100, derandomize=True, database=None)
    buggy = load_file(tmp_path / FILES[page], written)
    with pytest.raises(tg.GradcheckError) as error:
        settings(search, phases=[Phase.generate, Phase.shrink])(buggy.test_softmax)()
    report = " ".join(" ".join([str(error.value), *error.value.__notes__]).split())
    for fragment in (
        "gradcheck failed (2 problems, inputs checked: 0):",
        "<Softmax>.backward returned a grad of shape (2, 2) float64 for an input of shape (2, 1)",
        "<Softmax>.backward returned a grad of shape (2, 2) float32 for an input of shape (2, 1)",
        "Draw 1 (shapes): (2, 1)",
        "input 0 (shape (2, 1), float64, layout 'C'): np.array([[ 0.1257302210933933], "
        "[-0.1321048632913019]])",
    ):
        assert fragment in report, f"the test's failure no longer says {fragment!r}"
        assert fragment in shown, f"{page} does not show {fragment!r}"
    assert written.count(removed) == 1, f"{page}: the fix's line is not in the file"
    fixed = load_file(tmp_path / "fixed" / FILES[page], written.replace(removed, added))
    search(fixed.test_softmax)()


# ---- links, pictures, the README's place ---------------------------------------------------------
def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces made hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES)
def test_links_and_pictures_point_at_what_exists(page):
    text = FENCE.sub("", (ROOT / page).read_text())
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"\w+://", target):
            continue
        path, _, fragment = target.partition("#")
        file = (ROOT / page).parent / path if path else ROOT / page
        assert file.exists(), f"{page} links to {target}, which is not there"
        if fragment:
            headings = re.findall(r"^#+ (.+)$", FENCE.sub("", file.read_text()), re.MULTILINE)
            assert fragment in {anchor(h) for h in headings}, f"{page}: no heading #{fragment}"


def test_the_readme_is_a_readme():
    """It fits the budget issue 26 set, and its test line is the one CI runs."""
    readme = (ROOT / "README.md").read_text()
    lines = len(readme.splitlines())
    assert lines <= 250, f"the README has {lines} lines, over 250: move the detail to a docs page"
    ci = (ROOT / ".ci" / "run").read_text()
    line = ci.split("# The README's test line, as written there:\n")[1].splitlines()[0]
    assert f"\n{line}\n" in readme, f"the README does not show CI's test line: {line}"


def test_layout_page_names_every_module():
    """docs/layout.md names each module of tinygan/ (a package by its folder), each script of
    examples/ and bench/, and nothing that is not there."""
    named = set(re.findall(r"`((?:tinygan|examples|bench|tests|docs|\.ci)/[\w/.]*)`",
                           (DOCS / "layout.md").read_text()))  # fmt: skip
    modules = [*(ROOT / "tinygan").rglob("*.py"), *(ROOT / "examples").glob("*.py"),
               *(ROOT / "bench").glob("*.py")]  # fmt: skip
    unnamed = []
    for module in modules:
        path = module.relative_to(ROOT).as_posix()
        names = {path, f"{module.parent.relative_to(ROOT).as_posix()}/"}
        if not (names if module.name == "__init__.py" else {path}) & named:
            unnamed.append(path)
    missing = [p for p in sorted(named) if not (ROOT / p).exists()]
    assert not unnamed and not missing, (
        f"docs/layout.md does not say what {sorted(unnamed)} are for, and names {missing}, "
        "which do not exist"
    )


if __name__ == "__main__":  # redraw the committed pictures
    os.environ["TINYGAN_DOCS_OUT"] = str(DOCS)
    results = [run_page(page) for page in PAGES]
    sys.exit(1 if any(r.failed for r in results) else 0)
