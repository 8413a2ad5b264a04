"""The nurse view's scripts are ES modules: each import names a file that exists, the page
loads its entry as a module, and the server sends .js with a JavaScript type (a browser
refuses a module script served as anything else)."""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

STATIC = Path(__file__).resolve().parents[1] / "gateway/web/static"
IMPORT = re.compile(r'^import\s.*?\sfrom\s+"([^"]+)";', re.M)


def test_every_module_import_resolves_to_a_file():
    modules = sorted((STATIC / "js").glob("*.js"))
    assert modules
    for path in modules:
        for spec in IMPORT.findall(path.read_text()):
            assert spec.startswith("./") and spec.endswith(".js"), (path.name, spec)
            assert (path.parent / spec).is_file(), (path.name, spec)


def test_the_page_loads_its_entry_as_a_module():
    html = (STATIC / "index.html").read_text()
    (src,) = re.findall(r'<script type="module" src="/static/([^"]+)"></script>', html)
    assert (STATIC / src).is_file()


def test_js_is_served_with_a_javascript_type():
    # Starlette's StaticFiles takes the type from mimetypes
    assert mimetypes.guess_type("app.js")[0] in ("text/javascript", "application/javascript")
