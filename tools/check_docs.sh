#!/usr/bin/env bash
# Builds the API reference (MkDocs + mkdocstrings, warnings are errors) and type-checks the
# package with mypy. Installs nothing: `pip install ".[docs]"` first (CI does).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
echo "== mkdocs build --strict"
python -m mkdocs build --strict --quiet --site-dir "$site"
test -s "$site/api/layers/index.html" && test -s "$site/swift/index.html"
echo "== mypy (settings in pyproject.toml)"
python -m mypy --no-error-summary python/metalnn
echo "docs and types: ok"
