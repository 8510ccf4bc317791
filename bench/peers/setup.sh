#!/usr/bin/env bash
# Creates bench/peers/.venv with the peer operators' dependencies (kopf and its Kubernetes client), kept apart
# from kaito-ctrl's own venv so that neither pins the other's packages. Idempotent: a venv that already has the
# pinned versions is reused.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"
stamp="$venv/.requirements"
if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
  echo "peers venv up to date: $venv"
  exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
"$venv/bin/python" -c 'import kopf, kubernetes_asyncio; print("peers venv ready: kopf", kopf.__version__ if hasattr(kopf, "__version__") else "")'
