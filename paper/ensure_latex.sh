#!/bin/sh
# Makes sure pdflatex and latexmk exist; on Debian/Ubuntu installs a minimal TeX Live
# (LaTeX base + recommended packages + Type 1 fonts, ~22 MB of packages) with apt.
set -e
if command -v latexmk >/dev/null 2>&1 && command -v pdflatex >/dev/null 2>&1; then
    exit 0
fi
PACKAGES="texlive-latex-base texlive-latex-recommended texlive-fonts-recommended latexmk"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "pdflatex/latexmk not found and apt-get is not available: install a TeX distribution" >&2
    echo "with latexmk (e.g. TeX Live: $PACKAGES), then run make paper again." >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "pdflatex/latexmk not found; as root run: apt-get install -y --no-install-recommends $PACKAGES" >&2
        exit 1
    fi
fi
echo "installing LaTeX: $PACKAGES"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $PACKAGES
