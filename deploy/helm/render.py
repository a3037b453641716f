#!/usr/bin/env python3
"""Renders and lints the wasmcol chart offline (no helm binary, no cluster), with PyPI's
helm-python-sdk (Helm's own Go SDK behind a C ABI).

    render.py [--values FILE]... [--set KEY=VALUE]... [--name NAME] [--namespace NS] OUT
        writes the manifests to OUT (one multi-document YAML) and prints the lint report
        (JSON: {"lint": {...}, "templates": [...], "manifests": [each document]}) on stdout. Exit status 2 when rendering
        fails (the message on stderr), 1 when lint reports errors or warnings.
"""
import argparse
import json
import os
import sys

import helm_python as helm

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wasmcol")


def merge(base, over):
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--values", "-f", action="append", default=[])
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--name", default="wasmcol")
    parser.add_argument("--namespace", default="telemetry")
    parser.add_argument("out")
    args = parser.parse_args()

    # Several -f and --set merge in order, as helm does.
    values = {}
    for path in args.values:
        with open(path) as f:
            merge(values, helm.values_from_yaml(f.read()) or {})
    for expression in args.set:
        merge(values, helm.parse_set_string(expression))

    try:
        with helm.Chart.load(CHART) as chart:
            manifests = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    except helm.HelmError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    documents = []
    parsed = []
    for path in sorted(manifests):
        text = manifests[path].strip()
        if path.endswith(".yaml") and text:
            documents.append(f"# Source: {path}\n{text}\n")
            parsed.append(helm.values_from_yaml(text))
    with open(args.out, "w") as f:
        f.write("---\n".join(documents))

    report = helm.lint(CHART, values, strict=True, namespace=args.namespace)
    print(json.dumps({"lint": report, "templates": sorted(manifests), "manifests": parsed}))
    if report.get("errors") or any(m["severity"] >= 2 for m in report.get("messages", [])):
        sys.exit(1)


if __name__ == "__main__":
    main()
