#!/usr/bin/env bash
# Build (once), cache and install MinkowskiEngine 0.5.4, CPU-only, into the project venv.
#
# MinkowskiEngine's last release (0.5.4, 2021) has no wheels and compiles only with help:
#   * system packages libopenblas-dev (BLAS for its CPU kernels) and ninja-build;
#   * the BLAS choice passed through setuptools' PEP 517 "--global-option" escape hatch
#     (its setup.py reads --blas=... and --blas_include_dirs=... from sys.argv);
#   * `from collections import Sequence` (removed in Python 3.10) patched to collections.abc
#     in five of its Python files after installation.
# The built wheel is kept in $ME_WHEEL_CACHE so later runs (CI, `make setup`) only reinstall it.
# Idempotent: exits at once when `import MinkowskiEngine` already works.
#
# Usage: scripts/build_minkowski.sh [PYTHON]     (default: .venv/bin/python)
# Env:   ME_WHEEL_CACHE (default ~/.cache/imcodec/wheels), MAX_JOBS (default 2),
#        IMCODEC_SKIP_MINKOWSKI=1 to skip entirely.
set -euo pipefail

PY="${1:-${PYTHON_BIN:-.venv/bin/python}}"
CACHE="${ME_WHEEL_CACHE:-$HOME/.cache/imcodec/wheels}"
ME_VERSION="0.5.4"

if [[ "${IMCODEC_SKIP_MINKOWSKI:-0}" == "1" ]]; then
    echo "build_minkowski: skipped (IMCODEC_SKIP_MINKOWSKI=1)"
    exit 0
fi
if [[ ! -x "$PY" ]]; then
    echo "build_minkowski: python '$PY' not found; run 'make setup' first" >&2
    exit 2
fi

me_imports() {
    "$PY" -c "import MinkowskiEngine" >/dev/null 2>&1
}

patch_sequence_imports() {
    # collections.Sequence was removed in Python 3.10; point the imports at collections.abc.
    "$PY" - <<'PYEOF'
import importlib.util, pathlib, re
spec = importlib.util.find_spec("MinkowskiEngine")
if spec is None or not spec.submodule_search_locations:
    raise SystemExit("build_minkowski: MinkowskiEngine is not installed, nothing to patch")
root = pathlib.Path(list(spec.submodule_search_locations)[0])
pattern = re.compile(r"^from collections import (.*)$", re.M)
patched = 0
for path in sorted(root.rglob("*.py")):
    text = path.read_text()
    def fix(m):
        names = [n.strip() for n in m.group(1).split(",")]
        if "Sequence" not in names:
            return m.group(0)
        rest = [n for n in names if n != "Sequence"]
        out = "from collections.abc import Sequence"
        if rest:
            out += "\nfrom collections import " + ", ".join(rest)
        return out
    new = pattern.sub(fix, text)
    if new != text:
        path.write_text(new)
        patched += 1
print(f"build_minkowski: patched collections.Sequence imports in {patched} files under {root}")
PYEOF
}

if me_imports; then
    echo "build_minkowski: MinkowskiEngine already importable, nothing to do"
    exit 0
fi

# Installed but unpatched (e.g. a reinstall from pip's own cache): patch and retry.
if "$PY" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('MinkowskiEngine') is None)"; then
    patch_sequence_imports
    if me_imports; then exit 0; fi
fi

mkdir -p "$CACHE"
TORCH_VER="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
# A wheel compiled against one torch ABI does not load with another: key the cache on both.
WHEEL_DIR="$CACHE/minkowskiengine-$ME_VERSION-torch$TORCH_VER-$PY_TAG"
WHEEL="$(ls "$WHEEL_DIR"/[Mm]inkowski[Ee]ngine-"$ME_VERSION"-*.whl 2>/dev/null | head -n1 || true)"

if [[ -z "$WHEEL" ]]; then
    MULTIARCH="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
    BLAS_INC="/usr/include/$MULTIARCH/openblas-pthread"
    if [[ ! -f "$BLAS_INC/cblas.h" ]] || ! command -v ninja >/dev/null 2>&1; then
        if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev ninja-build
        else
            echo "build_minkowski: needs libopenblas-dev and ninja-build (apt-get install -y libopenblas-dev ninja-build)" >&2
            exit 2
        fi
    fi
    echo "build_minkowski: compiling MinkowskiEngine $ME_VERSION (CPU-only, ~11 min on 2 cores)"
    # setup.py calls `pip uninstall`: make sure that is the venv's pip.
    export PATH="$(dirname "$PY"):$PATH"
    export MAX_JOBS="${MAX_JOBS:-2}"
    mkdir -p "$WHEEL_DIR"
    "$PY" -m pip wheel --no-deps --no-build-isolation -w "$WHEEL_DIR" \
        --config-settings="--global-option=--cpu_only --blas=openblas --blas_include_dirs=$BLAS_INC" \
        "MinkowskiEngine==$ME_VERSION"
    WHEEL="$(ls "$WHEEL_DIR"/[Mm]inkowski[Ee]ngine-"$ME_VERSION"-*.whl | head -n1)"
fi

echo "build_minkowski: installing $WHEEL"
"$PY" -m pip install --no-deps --force-reinstall "$WHEEL"
patch_sequence_imports
if ! me_imports; then
    echo "build_minkowski: MinkowskiEngine still does not import:" >&2
    "$PY" -c "import MinkowskiEngine" >&2 || true
    exit 1
fi
echo "build_minkowski: MinkowskiEngine $ME_VERSION ready"
