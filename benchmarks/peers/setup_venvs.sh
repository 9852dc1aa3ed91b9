#!/usr/bin/env bash
# Build the peers' virtual environments (idempotent): one venv per peer, none shares the product's.
# torch==2.13.0 goes in first: it is the CPU wheel; any other torch pulls a multi-GB CUDA build.
# Usage: setup_venvs.sh [spikingjelly|sinabs|snntoolbox|nir ...]   (default: the three peers; nir only when named)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3.11}"
PEERS=("$@")
[ ${#PEERS[@]} -eq 0 ] && PEERS=(spikingjelly sinabs snntoolbox)

make_venv() {  # make_venv NAME: create .venv-NAME unless its stamp exists; echo its pip
    local venv="$HERE/.venv-$1"
    test -x "$venv/bin/python" || "$PYTHON" -m venv "$venv"
    echo "$venv/bin/python -m pip --disable-pip-version-check -q"
}

install_spikingjelly() {
    local pip; pip=$(make_venv spikingjelly)
    $pip install torch==2.13.0
    # --no-deps: its declared deps pull torchvision/torchaudio/tensorboard and a CUDA torch.
    $pip install --no-deps spikingjelly==2.0.0
    $pip install numpy scipy matplotlib loguru tqdm packaging h5py requests
}

install_sinabs() {
    local pip; pip=$(make_venv sinabs)
    $pip install torch==2.13.0
    $pip install sinabs==3.1.3
}

install_snntoolbox() {
    local pip; pip=$(make_venv snntoolbox)
    # torch only to load the example modules and weights that are rebuilt in Keras.
    $pip install torch==2.13.0
    $pip install "tensorflow-cpu==2.15.*"
    $pip install --no-deps snntoolbox==0.6.0
    # snntoolbox 0.6.0 uses np.bool (removed in numpy 1.24).
    $pip install numpy==1.23.5 future
}

install_nir() {  # the NIR consumer of run_nir.py and tests/backends/test_nir_consumer.py
    local pip; pip=$(make_venv nir)
    $pip install torch==2.13.0
    $pip install nir==1.0.8
    # --no-deps: nirtorch and snntorch need only torch, nir and numpy, already there.
    $pip install --no-deps nirtorch==2.6 snntorch==1.0.0
}

for peer in "${PEERS[@]}"; do
    stamp="$HERE/.venv-$peer/.installed"
    if [ -f "$stamp" ]; then echo "$peer: venv present"; continue; fi
    echo "$peer: installing into $HERE/.venv-$peer"
    start=$SECONDS
    "install_$peer"
    touch "$stamp"
    echo "$peer: installed in $((SECONDS - start)) s"
done
