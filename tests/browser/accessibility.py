"""An automated accessibility check of the page the browser is on: axe-core 4.14.1, vendored in
tests/browser/axe/ (its README says where from, its licence MPL-2.0; nothing is fetched at run
time), injected through WebDriver (not a page script, so the pages' CSP without inline script
stands). A serious or critical violation fails the walk with axe's findings listed."""

from __future__ import annotations

from functools import cache
from pathlib import Path

#: axe's impact levels that fail a page (minor and moderate ones are returned, not failed)
FAILING = ("serious", "critical")
AXE = Path(__file__).with_name("axe") / "axe.min.js"


@cache
def _axe_source() -> str:
    return AXE.read_text(encoding="utf-8")


def _report(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        lines.extend(f"    {', '.join(map(str, node['target']))}: "
                     f"{node.get('failureSummary', '').splitlines()[-1:]}"
                     for node in v["nodes"][:8])
    return "\n".join(lines)


def check_accessibility(browser, page: str) -> list[dict]:
    """Run axe (WCAG 2.x A and AA rules and best practices) on the current page; fail on a
    serious or critical violation; return every violation found."""
    browser.execute_script(_axe_source())
    results = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(r => done({violations: r.violations}),"
        " e => done({error: String(e)}));")
    assert "error" not in results, f"{page}: axe failed: {results.get('error')}"
    violations = results["violations"]
    failing = [v for v in violations if v.get("impact") in FAILING]
    assert not failing, f"{page}: {len(failing)} serious or critical:\n{_report(failing)}"
    return violations
