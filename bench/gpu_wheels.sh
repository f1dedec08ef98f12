#!/usr/bin/env bash
# Wheels that a bare GPU machine (Python 3.12, torch/torchvision/numpy/pandas/pyarrow/aiohttp/grpcio
# already installed, no package index) lacks to run bench/gpu.sh, in .whl/ (under 64 MiB, what a
# device call can carry). Run it here, from the repo root, where pip reaches a registry; then on
# the GPU machine, before `bash bench/gpu.sh PART`:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# Ray's wheel alone is 79 MB: its Java jar, RLlib, Serve, LLM and the dashboard's source maps go
# (ganray uses none of them). The dashboard's built frontend stays: ganray's local Ray starts the
# dashboard (Ray Train's controller asks its state API), and Ray refuses to start without it.
set -euo pipefail
dir=${1:-.whl}
mkdir -p "$dir"
grep -qx "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >> .git/info/exclude
py=${PYTHON:-python3}
get() {
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 -d "$dir" "$@"
}
# ganray's own needs the image lacks, then what ray[default,train,tune] needs beyond the image.
get ray==2.60.0 torch-fidelity==0.4.0 pydantic pydantic-core annotated-types typing-inspection typing-extensions \
  tensorboardX jsonschema jsonschema-specifications referencing rpds-py \
  aiohttp-cors colorful opencensus opencensus-context google-api-core google-auth googleapis-common-protos \
  proto-plus pyasn1 pyasn1-modules cryptography cffi pycparser smart-open py-spy virtualenv distlib \
  platformdirs python-discovery tzdata opentelemetry-api opentelemetry-sdk opentelemetry-proto \
  opentelemetry-exporter-prometheus opentelemetry-semantic-conventions
zip -q -d "$dir"/ray-2.60.0-*.whl 'ray/jars/*' 'ray/rllib/*' 'ray/serve/*' 'ray/llm/*' 'ray/dashboard/client/build/*.map' \
  'ray/dashboard/client/build/static/js/*.map' || true
total=$(du -cb "$dir"/*.whl | tail -1 | cut -f1)
echo "$dir: $(ls "$dir"/*.whl | wc -l) wheels, $((total / 1048576)) MiB (a device call carries at most 64 MiB with the tree)"
