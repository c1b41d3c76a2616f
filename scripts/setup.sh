#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian 12 machine: system packages, then .venv with the pinned CPU
# torch first, fairseq-fixed built against it, then speechfm with its dev extras.
# A second run only checks stamps and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# Knobs for the container images (containers/*.def), which install the project the same way:
#   SPEECHFM_SYSTEM_PACKAGES  space-separated Debian packages instead of the full list below
#   SPEECHFM_TORCH_INDEX      extra package index for torch (ROCm or CUDA builds of torch==2.13.0)
read -r -a SYSTEM_PACKAGES <<< "${SPEECHFM_SYSTEM_PACKAGES:-ffmpeg espeak-ng sox libsndfile1 flac munge slurmctld slurmd slurm-client chromium}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

stamp=".venv/.setup-$( (cat pyproject.toml constraints.txt scripts/setup.sh; echo "${SPEECHFM_TORCH_INDEX:-}") | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
    exit 0
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
pip() {  # quiet pip that always honours the constraints; drops the noise of missing local indexes
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}
# 1. torch first, the CPU build from the local wheel; constraints keep it from ever being replaced.
if [ -n "${SPEECHFM_TORCH_INDEX:-}" ]; then
    pip --extra-index-url "$SPEECHFM_TORCH_INDEX" torch==2.13.0
else
    pip torch==2.13.0
fi
# 2. fairseq-fixed compiles against the installed torch: no build isolation, or pip fetches another torch.
pip --no-build-isolation numpy cython wheel "setuptools<81"
# kenlm (C++, ~2 minutes to compile, no dependencies) builds at the same time as fairseq: each
# build compiles one file at a time, so on 2 cores the two together take as long as fairseq alone.
kenlm_build=""
if ! .venv/bin/python -c "import kenlm" 2>/dev/null; then
    pip kenlm &
    kenlm_build=$!
fi
if ! .venv/bin/python -c "import fairseq" 2>/dev/null; then
    echo "setup: building fairseq-fixed (about 3 minutes)"
    pip --no-build-isolation fairseq-fixed==0.12.3.1
fi
[ -z "$kenlm_build" ] || wait "$kenlm_build"
# 3. the project and its dev tools.
pip -e ".[dev]"
# pyctcdecode (CTC beam search with an n-gram) declares numpy<2, which would downgrade the numpy
# torch and pandas are built for; it runs on numpy 2 (tests/test_lm.py), so it goes in without
# its declared dependencies (pygtrie and kenlm come with the project).
pip --no-deps pyctcdecode
# fairseq-fixed pulls torchaudio from PyPI: a CUDA build that cannot load beside the CPU torch and
# makes transformers fail on import (OSError, not ImportError). Nothing here needs it.
if .venv/bin/python -m pip show -q torchaudio >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall -y -q torchaudio
fi
rm -f .venv/.setup-*
touch "$stamp"
echo "setup: done (.venv ready)"
