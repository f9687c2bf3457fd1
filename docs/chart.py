"""Draw the results of ``bench/requests.py --json`` as an SVG bar chart, for the performance page.

    .venv/bin/python bench/requests.py --rounds 3 --requests 50 --json /tmp/r.json
    python3 docs/chart.py /tmp/r.json docs/images/requests.svg --note "one run on a 2-core machine"

One group of bars per scenario, one bar per engine: the median time of a request, in microseconds, with the ratio to
Django's engine of the same kind beside each of ours. Plain SVG text, no plotting library.
"""

from __future__ import annotations

import argparse
import json
from html import escape
from pathlib import Path
from typing import Any

#: Bar colours: Django's engines in greys, ours in blues; the darker of each pair is cached_db.
COLOURS = {
    "django db": "#b0b7bf",
    "qsessions db": "#6fa8dc",
    "django cached_db": "#6c757d",
    "qsessions cached_db": "#1f5fa8",
}
WIDTH = 760
LEFT = 170  # room for the engine names
RIGHT = 130  # room for the value and ratio after the longest bar
BAR = 14
GAP = 4
GROUP_GAP = 26
TOP = 110


def _text(x: float, y: float, content: str, **attributes: str) -> str:
    extra = "".join(f' {name.replace("_", "-")}="{value}"' for name, value in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(content)}</text>'


def render(run: dict[str, Any], note: str) -> str:
    """The SVG document for one run of ``bench/requests.py``."""
    results = run["results"]
    scenarios = list(dict.fromkeys(row["scenario"] for row in results))
    engines = [engine for engine in COLOURS if any(row["engine"] == engine for row in results)]
    by_key = {(row["scenario"], row["engine"]): row for row in results}
    longest = max(row["median_us"] for row in results)
    scale = (WIDTH - LEFT - RIGHT) / longest
    group_height = 18 + len(engines) * (BAR + GAP)
    height = TOP + len(scenarios) * (group_height + GROUP_GAP) + 10

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="12" role="img" '
        'aria-labelledby="title">',
        f'<title id="title">Median time per request, Django\'s session engines and qsessions ({len(scenarios)} '
        "scenarios)</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        _text(12, 22, "Median time per request (µs, shorter is faster)", font_size="15", font_weight="600"),
        _text(
            12,
            40,
            f"bench/requests.py: {run['db']} + {run['cache']}, Django {run['django']}, Python {run['python']}, "
            f"{run['rounds']} rounds of {run['requests']} requests",
            fill="#555555",
        ),
        _text(12, 56, note, fill="#555555"),
    ]
    x = 12.0
    for engine in engines:
        parts.append(f'<rect x="{x:.1f}" y="68" width="12" height="12" fill="{COLOURS[engine]}"/>')
        parts.append(_text(x + 17, 78, engine))
        x += 17 + 7.2 * len(engine) + 18
    parts.append(_text(12, 98, "(ratio) = ours ÷ Django's engine of the same kind", fill="#555555"))

    y = float(TOP)
    for scenario in scenarios:
        parts.append(_text(12, y + 12, scenario, font_weight="600"))
        y += 18
        for engine in engines:
            row = by_key.get((scenario, engine))
            if row is not None:
                width = max(row["median_us"] * scale, 1.0)
                label = f"{row['median_us']:.0f}"
                if engine.startswith("qsessions"):
                    label += f" ({row['ratio']:.2f})"
                parts.append(_text(LEFT - 8, y + BAR - 3, engine, text_anchor="end", fill="#333333"))
                parts.append(
                    f'<rect x="{LEFT}" y="{y:.1f}" width="{width:.1f}" height="{BAR}" fill="{COLOURS[engine]}"/>'
                )
                parts.append(_text(LEFT + width + 6, y + BAR - 3, label))
            y += BAR + GAP
        y += GROUP_GAP
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the file bench/requests.py --json wrote")
    parser.add_argument("output", type=Path, help="the SVG file to write")
    parser.add_argument("--note", default="", help="said after the run's settings, e.g. the machine it ran on")
    options = parser.parse_args()
    run = json.loads(options.results.read_text())
    options.output.write_text(render(run, options.note))


if __name__ == "__main__":
    main()
