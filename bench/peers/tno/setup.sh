#!/usr/bin/env bash
# Creates bench/peers/tno/.venv with TNO's MPC packages pinned in requirements.txt.
# Idempotent: when the venv already holds exactly the pinned versions it does nothing.
#
# Usage: bench/peers/tno/setup.sh [--force]
#   PYTHON=python3.12 bench/peers/tno/setup.sh   # choose the interpreter (>= 3.10)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
py="${PYTHON:-python3}"
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

die() { echo "setup.sh: error: $*" >&2; exit 1; }

command -v "$py" >/dev/null 2>&1 || die "'$py' not found; install Python >= 3.10 or set PYTHON=..."
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "$("$py" -V 2>&1) is too old: TNO's pinned dependencies need Python >= 3.10"
"$py" -c 'import venv, ensurepip' 2>/dev/null \
  || die "'$py -m venv' is unavailable (on Debian/Ubuntu: apt-get install python3-venv)"

# Prints the pins that the venv does not satisfy (empty output = up to date).
check_pins() {
  "$venv/bin/python" - "$req" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name}: want {want}, have {have}")
print("\n".join(bad))
EOF
}

# The import check: distributed_keygen must import together with the pinned communication module.
check_imports() {
  "$venv/bin/python" -W ignore -c '
import gmpy2
import tno.mpc.communication as c
import tno.mpc.encryption_schemes.utils as u
import tno.mpc.protocols.distributed_keygen as d
from tno.mpc.protocols.distributed_keygen import DistributedPaillier
from tno.mpc.communication import Pool
print(f"imports ok: distributed_keygen {d.__version__}, communication {c.__version__}, "
      f"encryption_schemes.utils {u.__version__}, gmpy2 {gmpy2.version()} ({gmpy2.mp_version()})")
'
}

if [[ $force -eq 1 && -d "$venv" ]]; then
  echo "setup.sh: --force: removing $venv" >&2
  rm -rf "$venv"
fi

if [[ -x "$venv/bin/python" ]] && [[ -z "$(check_pins 2>/dev/null || echo broken)" ]]; then
  check_imports
  echo "setup.sh: $venv is up to date"
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup.sh: creating $venv with $("$py" -V 2>&1)" >&2
  "$py" -m venv "$venv"
fi

# Reachability probe: fetch one small pinned file without installing anything, so an
# unreachable index gives one clear message instead of a long resolver traceback.
probe_dir="$(mktemp -d)"
trap 'rm -rf "$probe_dir"' EXIT
if ! "$venv/bin/python" -m pip download --quiet --no-deps --no-cache-dir --retries 1 --timeout 30 \
     -d "$probe_dir" "tno.mpc.protocols.distributed_keygen==4.3.0" >"$probe_dir/log" 2>&1; then
  tail -n 5 "$probe_dir/log" >&2
  die "cannot download from the Python package index (pip as configured on this machine).
  Check network access, a proxy (HTTPS_PROXY) or pip's index-url / cert settings, then re-run."
fi

echo "setup.sh: installing pinned packages from $req" >&2
"$venv/bin/python" -m pip install --quiet --retries 2 --timeout 60 -r "$req" \
  || die "pip install -r $req failed (see above)"
"$venv/bin/python" -m pip check >&2 || die "pip check reports conflicting requirements"

missing="$(check_pins)"
[[ -z "$missing" ]] || die "venv does not match the pins:
$missing"
check_imports || die "TNO's packages do not import together in $venv"
echo "setup.sh: done; run: $venv/bin/python $here/run.py --help"
