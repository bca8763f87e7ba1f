#!/usr/bin/env python3
"""Lints and renders a Helm chart with the Helm v4 SDK (PyPI helm-python-sdk) and prints JSON.

Usage: helm-render.py CHART_DIR [VALUES_JSON]   (values may also come on stdin)

Output: {"lint": {...}, "manifests": {template path: YAML}, "crds": {file: YAML},
         "render_error": null | "message"}
A render failure (bad values, schema violation, `fail` in a template) is reported in
`render_error` with exit status 0, so callers can assert on it; usage errors exit 2.
Release name and namespace come from the values keys `__release` / `__namespace`
(removed before rendering), defaulting to `shortener` / `shortener-system`.
"""
import json
import sys

import helm_python as helm


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    chart_dir = sys.argv[1]
    raw = sys.argv[2] if len(sys.argv) == 3 else sys.stdin.read()
    values = json.loads(raw) if raw.strip() else {}
    if not isinstance(values, dict):
        print("values must be a JSON object", file=sys.stderr)
        return 2
    release = values.pop("__release", "shortener")
    namespace = values.pop("__namespace", "shortener-system")

    out = {"lint": None, "manifests": {}, "crds": {}, "render_error": None}
    out["lint"] = helm.lint(chart_dir, values=values, strict=True, namespace=namespace)
    chart = helm.Chart.load(chart_dir)
    try:
        out["crds"] = {name: text for name, text in _crds(chart)}
        out["manifests"] = chart.render(
            values=values, name=release, namespace=namespace, is_install=True
        )
    except helm.HelmError as err:
        out["render_error"] = str(err)
    finally:
        chart.close()
    json.dump(out, sys.stdout, default=str)
    return 0


def _crds(chart):
    """(file name, YAML) of the chart's crds/ directory, whatever shape the SDK returns."""
    crds = chart.crds() if callable(chart.crds) else chart.crds
    if isinstance(crds, dict):
        return sorted(crds.items())
    pairs = []
    for item in crds or []:
        if isinstance(item, dict):
            pairs.append((item.get("name") or item.get("filename"), item.get("data")))
        else:
            pairs.append((getattr(item, "name", None), getattr(item, "data", None)))
    return pairs


if __name__ == "__main__":
    sys.exit(main())
