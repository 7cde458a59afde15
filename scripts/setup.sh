#!/usr/bin/env bash
# Set up everything shardforge needs on Debian/Ubuntu (root or sudo): the system
# packages ffcv builds against, a .venv, torch, ffcv and the project. Safe to rerun:
# each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium + chromium-driver: the browser test of `shardforge view` (tests/test_view_browser.py)
# libjpeg-dev: the headers shardforge's own partial JPEG decoder builds against
SYSTEM_PACKAGES=(pkg-config libturbojpeg0-dev libjpeg-dev libopencv-dev chromium chromium-driver)
missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip setuptools wheel

# torch: keep whatever build the machine already has (GPU machines bring their own).
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  echo "[setup] installing torch + torchvision"
  "${PIP[@]}" install torch torchvision
fi
# ffcv is a source distribution: build it against the venv's numpy without isolation.
if ! .venv/bin/python -c "import ffcv" 2>/dev/null; then
  echo "[setup] building ffcv"
  "${PIP[@]}" install numpy "numba>=0.58" opencv-python-headless
  "${PIP[@]}" install --no-build-isolation ffcv
fi
echo "[setup] installing shardforge (editable) with test tools"
"${PIP[@]}" install -e ".[ffcv,test]"
.venv/bin/python -c "import ffcv, ray, torch, webdataset, shardforge; print('[setup] ok: torch', torch.__version__, '| ray', ray.__version__, '| ffcv', ffcv.__version__)"
