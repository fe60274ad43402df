# Sourced by scripts/demo and scripts/test: make .venv and install the project (once per
# pyproject.toml version). Usage: ensure_venv [dev]
#
# The installer is uv when it can be had (on PATH, or fetched once from PyPI into
# ~/.cache/precovery/uv: it resolves and installs ~10x faster than pip), else pip.
# Progress goes to stderr; PRECOVERY_INSTALLER=pip forces pip.

_uv() {
    local cache="${XDG_CACHE_HOME:-$HOME/.cache}/precovery/uv" py="$1"
    if [[ "${PRECOVERY_INSTALLER:-uv}" != uv ]]; then
        return 1
    fi
    if command -v uv >/dev/null 2>&1; then
        command -v uv
        return 0
    fi
    if [[ ! -x "$cache/bin/uv" ]]; then
        echo "setup: fetching the uv installer from PyPI into $cache (once)" >&2
        if ! "$py" -m pip install --quiet --disable-pip-version-check \
            --root-user-action=ignore --target "$cache" uv >&2; then
            echo "setup: uv is not available here; installing with pip instead" >&2
            rm -rf "$cache"
            return 1
        fi
    fi
    echo "$cache/bin/uv"
}

ensure_venv() {
    local extra="${1:-}" py="${PYTHON:-python3}" hash stamp spec uv start
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
    spec=".${extra:+[$extra]}"
    start=$SECONDS
    echo "setup: installing the project${extra:+ with its $extra tools} into .venv (first run only)" >&2
    if uv="$(_uv "$py")"; then
        # uv draws a progress bar on a terminal; off one, keep its summary lines only.
        if [[ -t 2 ]]; then
            "$uv" pip install --python .venv/bin/python -e "$spec"
        else
            "$uv" pip install --python .venv/bin/python -e "$spec" 2>&1 \
                | { grep --line-buffered -v '^ [+-] ' || true; } >&2
            (( PIPESTATUS[0] == 0 ))
        fi
    else
        .venv/bin/python -m pip install --quiet --disable-pip-version-check \
            --root-user-action=ignore --upgrade pip
        .venv/bin/python -m pip install --disable-pip-version-check --root-user-action=ignore \
            -e "$spec" | { grep --line-buffered -E '^(Collecting|Building|Installing|Successfully)' || true; } >&2
        (( PIPESTATUS[0] == 0 ))
    fi
    rm -f .venv/.installed-*
    touch "$stamp"
    echo "setup: installed in $((SECONDS - start)) s" >&2
}
