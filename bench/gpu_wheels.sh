#!/usr/bin/env bash
# Download the wheels that bench/gpu_suite.sh installs offline on the device machine (an H200 in a firecracker VM:
# Python 3.12, x86-64, torch with CUDA, no network; see bench/results/NOTES.md, "Running the GPU suite").
#
#     bash bench/gpu_wheels.sh [DEST]          # default DEST: .gpu_wheels (ignored by git; carried by the device tool)
#
# It resolves the project's needs that the device image lacks (nbdev 2.4.14 and its tools, plus ftfy and nltk from
# settings.ini's requirements) for CPython 3.12 on manylinux x86-64, drops every distribution the image already holds
# (IMAGE_HAS below: the image's package list as read on 2026-11-17), and keeps pure-Python wheels only:
# py3-none-any, or failing that a platform-tagged wheel with no ABI (`*-none-manylinux*`: watchdog publishes no
# other; it holds no compiled code). A wheel with a CPython ABI tag stops the script. DEST/requirements.txt lists
# the pinned top-level needs that gpu_suite.sh installs from DEST with `pip install --no-index`.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.gpu_wheels}
PY=${PYTHON:-python3}

# Top-level needs, pinned to the versions the project's tests pass with here.
REQS=(nbdev==2.4.14 fastcore==1.14.5 execnb==0.1.18 ghapi==1.1.1 fastgit==0.1.4 ftfy==6.3.1 nltk==3.10.4)

# The device image's Python packages (the device tool's list for nvidia-h200, read 2026-11-17), normalized names.
IMAGE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers
flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py
markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham
simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp"

TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "resolving ${REQS[*]} for CPython 3.12, manylinux x86-64"
"$PY" -m pip download -q --disable-pip-version-check -d "$tmp/all" "${TARGET[@]}" "${REQS[@]}" 2>&1 | grep -v 'is ignored' || true

norm() { echo "$1" | tr 'A-Z_.' 'a-z--'; }
mkdir -p "$tmp/keep"
for w in "$tmp"/all/*.whl; do
  f=$(basename "$w"); name=$(norm "${f%%-*}"); ver=$(echo "$f" | cut -d- -f2)
  if [[ " $(echo $IMAGE_HAS) " == *" $name "* ]]; then echo "  in the image: $name"; continue; fi
  if [[ $f == *-none-any.whl ]]; then cp "$w" "$tmp/keep/"; continue; fi
  # a platform wheel was chosen: look for a pure one of the same version
  if "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp/any" --only-binary=:all: --python-version 3.12 \
       --implementation cp --platform any "$name==$ver" >/dev/null 2>&1; then cp "$tmp"/any/*.whl "$tmp/keep/"; rm -f "$tmp"/any/*.whl; continue; fi
  abi=$(echo "${f%.whl}" | rev | cut -d- -f2 | rev)
  if [[ $abi == none ]]; then echo "  no py3-none-any wheel for $name $ver: keeping $f (no ABI tag, pure Python)"; cp "$w" "$tmp/keep/"; continue; fi
  echo "ERROR: $f is a compiled wheel and the image lacks $name: gpu_suite.sh cannot install it offline" >&2; exit 1
done

mkdir -p "$DEST"; rm -f "$DEST"/*.whl
mv "$tmp"/keep/*.whl "$DEST/"
printf '%s\n' "${REQS[@]}" > "$DEST/requirements.txt"
echo "wheels in $DEST:"; ls "$DEST"/*.whl | xargs -n1 basename | sed 's/^/  /'
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) (the device tool carries at most 64 MiB with the working tree)"
