"""axe-core, Deque's accessibility engine, run inside a page that Playwright drives.

The engine is the `axe.min.js` that PyPI's axe-playwright-python ships (pinned in pyproject.toml;
no npm, no network at test time). It is injected with `page.evaluate`, which goes through the
DevTools protocol: the pages' Content-Security-Policy (script-src 'self', no eval) does not stop
it, and the page under test needs no change.

    from tests.harness.axe import run_axe, serious
    found = await run_axe(page)
    assert serious(found) == [], describe(serious(found))
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.base import AXE_SCRIPT

# axe-core's impact levels, least to most severe; the pages must have none of the last two.
IMPACTS = ("minor", "moderate", "serious", "critical")
BLOCKING = ("serious", "critical")
# WCAG 2.0/2.1 A and AA plus axe's best practices (the rules that need no human judgement).
DEFAULT_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


async def run_axe(page: Any, tags: list[str] | None = None) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (each: id, impact, help, nodes)."""
    await page.evaluate(AXE_SCRIPT)
    options = {"runOnly": {"type": "tag", "values": tags or DEFAULT_TAGS},
               "resultTypes": ["violations"]}  # fmt: skip
    result = await page.evaluate("(options) => axe.run(document, options)", options)
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def serious(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The violations of serious or critical impact."""
    return [v for v in violations if v.get("impact") in BLOCKING]


def describe(violations: list[dict[str, Any]]) -> str:
    """One line a violation, with the elements it was found on: for an assertion message."""
    lines = []
    for v in violations:
        targets = ", ".join(" ".join(n["target"]) for n in v["nodes"][:5])
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} [{targets}]")
    return "\n".join(lines)
