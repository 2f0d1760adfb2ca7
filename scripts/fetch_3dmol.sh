#!/usr/bin/env bash
# Fetch 3Dmol.js from the npm registry into static/3dmol/ (git-ignored; never commit third-party JavaScript).
#
# The version defaults to the one py3Dmol was built against, so the Python and JavaScript sides match.
# Usage: scripts/fetch_3dmol.sh [VERSION]
# Streamlit serves it at /app/static/3dmol/3Dmol-min.js (see .streamlit/config.toml: enableStaticServing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/static/3dmol"
PYTHON="${PYTHON:-python3}"

VERSION="${1:-}"
if [[ -z "$VERSION" ]]; then
  VERSION="$("$PYTHON" - <<'PY' 2>/dev/null || true
import inspect, re
import py3Dmol
m = re.search(r"3dmol@([0-9][0-9A-Za-z.\-]*)/", inspect.getsource(py3Dmol.view.__init__))
print(m.group(1) if m else py3Dmol.__version__)
PY
)"
fi
if [[ -z "$VERSION" ]]; then
  echo "fetch_3dmol: cannot tell py3Dmol's 3Dmol.js version (is py3Dmol installed?); pass it as an argument" >&2
  exit 2
fi

if [[ -f "$DEST/3Dmol-min.js" && -f "$DEST/VERSION" && "$(cat "$DEST/VERSION")" == "$VERSION" ]]; then
  echo "fetch_3dmol: 3Dmol.js $VERSION already in $DEST"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "fetch_3dmol: npm not found (apt-get install npm); the app will use the CDN or the Plotly renderer" >&2
  exit 3
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "3dmol@$VERSION" >/dev/null)
TARBALL="$(ls "$WORK"/3dmol-*.tgz | head -n 1)"
tar -xzf "$TARBALL" -C "$WORK" package/build/3Dmol-min.js package/LICENSE 2>/dev/null \
  || tar -xzf "$TARBALL" -C "$WORK" package/build/3Dmol-min.js
mkdir -p "$DEST"
cp "$WORK/package/build/3Dmol-min.js" "$DEST/3Dmol-min.js"
[[ -f "$WORK/package/LICENSE" ]] && cp "$WORK/package/LICENSE" "$DEST/LICENSE"
echo "$VERSION" > "$DEST/VERSION"
echo "fetch_3dmol: installed 3Dmol.js $VERSION ($(wc -c < "$DEST/3Dmol-min.js") bytes) into $DEST"
