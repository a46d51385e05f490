#!/usr/bin/env bash
# Installs what zoo's build, tests and oracles need, when missing. Idempotent.
#   - Debian packages: libhdf5-dev (CHDF5), hdf5-tools (h5dump), libopenblas-dev, zlib1g-dev (CZlib)
#   - a Python venv at .venv with the test oracles (torch CPU, torchvision, onnx, onnxruntime, h5py, safetensors, keras+jax)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

need_apt=()
for p in libhdf5-dev hdf5-tools libopenblas-dev zlib1g-dev pkg-config python3 python3-venv; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

[ "${ZOO_NO_VENV:-0}" = 1 ] && exit 0
venv="$root/.venv"
stamp="$venv/.zoo-oracles-v2"
# A venv that already holds every oracle (e.g. provisioned by the machine) counts as set up.
have_oracles() {
  [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.util, sys
mods = ["torch", "torchvision", "onnx", "onnxruntime", "h5py", "safetensors", "numpy", "sklearn", "pytest", "PIL", "keras", "jax"]
sys.exit(0 if all(importlib.util.find_spec(m) for m in mods) else 1)
PY
}
if [ ! -f "$stamp" ] && ! have_oracles; then
  echo "setup: creating Python venv with the test oracles in .venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  # The machine image carries a CPU-only torch wheel (PyPI's torch pulls GBs of CUDA packages).
  wheel="$(ls /opt/wheels/torch-*cpu*.whl 2>/dev/null | head -1 || true)"
  [ -n "$wheel" ] || wheel="$(find / -xdev -name 'torch-*cpu*.whl' 2>/dev/null | head -1 || true)"
  if [ -n "$wheel" ]; then
    "$venv/bin/pip" install -q "$wheel"
  else
    echo "setup: no CPU torch wheel under /opt/wheels; PyTorch oracle tests will be skipped" >&2
  fi
  "$venv/bin/pip" install -q "torchvision==0.28.0" --no-deps
  "$venv/bin/pip" install -q numpy pillow "onnx==1.22.0" onnxruntime h5py safetensors scikit-learn pytest
  "$venv/bin/pip" install -q keras jax jaxlib || echo "setup: keras/jax not installed (Keras oracle tests will be skipped)"
  touch "$stamp"
fi
