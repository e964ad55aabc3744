#!/usr/bin/env bash
# A venv for the side-by-side baseline: d3rlpy's IQL on top of this project's packages.
# d3rlpy 2.8 pins gymnasium==1.0.0 but runs with 1.4; installing it --no-deps keeps our stack unchanged.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv --system-site-packages .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps d3rlpy==2.8.1 structlog \
    dataclasses-json marshmallow typing-inspect mypy-extensions gym==0.26.2 gym-notices scikit-learn \
    joblib threadpoolctl scipy narwhals matplotlib contourpy cycler fonttools kiwisolver pillow pyparsing
.venv/bin/python -c "import d3rlpy, matplotlib; print('d3rlpy', d3rlpy.__version__)"
