"""axe-core in the Playwright tests: the accessibility rules of WCAG 2.1 A and AA run on a part
of the page, and the serious and critical violations returned in plain words.

axe-core (MPL-2.0, Deque Systems) is vendored under tests/vendor/axe-core/ from the npm package
(``npm pack axe-core``; the version is on the file's first line): for the tests only, never
served by the service. It is evaluated through the DevTools protocol, which the page's strict
Content-Security-Policy does not govern, so the page under test is the one users get.
"""

from __future__ import annotations

from pathlib import Path

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SERIOUS = ("serious", "critical")


async def serious_violations(page, include: str = "body") -> list[str]:
    """Each serious or critical violation in ``include`` (a CSS selector): rule, impact, help and
    the first offending elements."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(AXE.read_text() + "\n;0")
    result = await page.evaluate(
        """async ([include, tags]) => {
             const r = await axe.run(document.querySelectorAll(include), { runOnly: { type: "tag", values: tags } });
             return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                               nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
           }""", [include, TAGS])
    return [f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['nodes'])}" for v in result if v["impact"] in SERIOUS]
