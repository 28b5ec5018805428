#!/usr/bin/env bash
# Create .venv and install bncompare with its test extra.
#
# torch is installed first so that pip never resolves an unpinned torch:
#   - default TORCH_SPEC="torch==2.13.0": on this CPU-only machine pip takes the
#     CPU build that lies on disk (a few seconds);
#   - GPU users set TORCH_SPEC to the CUDA build they want, e.g.
#       TORCH_SPEC="torch==2.13.0" with their CUDA wheel index configured in pip,
#     or install torch into .venv themselves and run with TORCH_SPEC=skip.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
if [ "${TORCH_SPEC:-}" != "skip" ]; then
  .venv/bin/pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
echo "bncompare installed in .venv (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
