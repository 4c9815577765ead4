"""The documentation site builds (``make docs``: mkdocs --strict) without a network, and its
generated pages say what the code says: the CLI page comes from the parser, the API page from
the docstrings, the model table from the registry."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_every_page_in_the_nav_is_built(site):
    import yaml

    cfg = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)

    def pages(nav):
        for item in nav:
            for value in item.values():
                yield from pages(value) if isinstance(value, list) else [value]

    for page in pages(cfg["nav"]):
        built = site / ("index.html" if page == "index.md" else page[:-3] + "/index.html")
        assert built.exists(), page
    for md in (ROOT / "docs").rglob("*.md"):  # every markdown file is reachable from the nav
        assert str(md.relative_to(ROOT / "docs")) in set(pages(cfg["nav"])), f"{md} is not in mkdocs.yml's nav"


def test_cli_reference_is_generated_from_the_parser(site):
    import argparse

    from sozo.cli import build_parser

    text = _text(site / "cli" / "index.html")
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        assert f"usage: sozo {name}" in text, f"sozo {name} is missing from the CLI reference"
        for action in parser._actions:  # every option of every command is documented
            for flag in action.option_strings:
                assert flag in text, f"sozo {name} {flag}"
    assert "sozo-cli-reference" not in text


def test_api_reference_and_model_table_come_from_the_code(site):
    import sozo
    import sozo.api

    api = _text(site / "api" / "index.html")
    for fn in (sozo.train, sozo.load, sozo.evaluate):
        first = fn.__doc__.strip().splitlines()[0]
        assert first in api, first
    home = _text(site / "index.html")
    for name in sozo.list_models():
        assert name in home, f"model {name} is missing from the generated table"
    # the site works offline: no scripts or style sheets from a CDN
    for page in site.rglob("*.html"):
        assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', page.read_text(encoding="utf-8")), page
