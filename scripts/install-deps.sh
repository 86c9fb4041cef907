#!/usr/bin/env bash
# Installs the Debian packages FlowForce needs, and only those that are missing.
# Idempotent: a second run installs nothing. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake
  libopenmm-dev libopenmm-plugins python3-simtk  # OpenMM C++ (the plugin), its CPU platform, openmm.app (classical Systems)
  libtorch-dev python3-torch                     # LibTorch; torch writes the plugin tests' TorchScript models
  libcli11-dev nlohmann-json3-dev libhdf5-dev    # the CLI, JSON (model headers, reports), H5MD datasets
  libopenblas0-pthread  # optimised BLAS for LibTorch (Debian defaults to the slow reference BLAS)
  swig python3-dev      # the Python module flowforce
  libgtest-dev libbenchmark-dev                  # GoogleTest suites; Google Benchmark suites
  clang-14 libclang-rt-14-dev                    # fuzzing (make fuzz: clang with libFuzzer)
  python3-numpy python3-matplotlib               # plots
  python3-h5py python3-pytest python3-mdanalysis # tests (MDAnalysis: an independent reader of our H5MD and DCD files)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} Debian packages present"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} missing Debian package(s): ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: not root and no sudo; install these by hand: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
