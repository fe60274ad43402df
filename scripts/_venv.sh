# Sourced by scripts/demo and scripts/test: make .venv and install the project (once per
# pyproject.toml version). Usage: ensure_venv [dev]
ensure_venv() {
    local extra="${1:-}" py="${PYTHON:-python3}" hash stamp
    if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "precovery needs Python 3.11+; $py is $("$py" --version 2>&1)" >&2
        return 1
    fi
    if [[ ! -x .venv/bin/python ]]; then
        echo "setup: creating .venv with $("$py" --version)" >&2
        "$py" -m venv .venv
    fi
    hash=$(sha256sum pyproject.toml | cut -c1-16)
    stamp=".venv/.installed-$hash-${extra:-base}"
    if [[ -f "$stamp" || ( -z "$extra" && -f ".venv/.installed-$hash-dev" ) ]]; then
        return 0
    fi
    echo "setup: installing the project${extra:+ with its $extra tools} into .venv (first run only)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extra:+[$extra]}"
    rm -f .venv/.installed-*
    touch "$stamp"
}
