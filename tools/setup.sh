#!/usr/bin/env bash
# Install everything kdetect needs on a fresh Debian machine (run as root, or with sudo present):
# PHP with GD for the renderer, the free fonts tools/make_fonts.py draws from, Chromium and
# Node for the browser demo and its tests, TF.js from npm (web/node_modules), and a virtual
# environment .venv holding kdetect with its pinned Python dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(php-cli php-gd python3-venv fonts-urw-base35 fonts-texgyre fonts-liberation
              fonts-freefont-ttf fonts-crosextra-caladea fonts-linuxlibertine fonts-cardo
              fonts-ebgaramond fonts-vollkorn fonts-adf-accanthis fonts-adf-baskervald fonts-dejavu-core
              # the adaptation library (tools/make_fonts.py --library): sans, rounded, monospace, oblique
              fonts-roboto-unhinted fonts-inter fonts-cantarell fonts-karla fonts-cabin fonts-clear-sans fonts-go
              fonts-b612 fonts-league-spartan fonts-quicksand fonts-comfortaa fonts-dosis fonts-sil-andika
              fonts-inconsolata fonts-jetbrains-mono fonts-firacode fonts-anonymous-pro fonts-hermit fonts-mononoki
              fonts-league-mono fonts-beteckna fonts-manrope fonts-mplus fonts-jura fonts-play fonts-oxygen
              fonts-opendin fonts-junction fonts-eurofurence fonts-millimetre fonts-sil-charis fonts-sil-gentiumplus
              fonts-oldstandard fonts-lmodern fonts-goudybookletter
              fonts-averia-sans-gwf fonts-averia-serif-gwf fonts-averia-gwf fonts-paratype fonts-tuffy
              fonts-adf-gillius fonts-adf-universalis fonts-allerta fonts-cmu fonts-routed-gothic fonts-national-park
              fonts-roadgeek fonts-sora fonts-comic-neue fonts-century-catalogue fonts-adf-romande fonts-adf-oldania
              fonts-adf-irianis fonts-noto-core fonts-fanwood fonts-prociono fonts-junicode
              chromium)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# Node runs the JavaScript decoder's tests and npm installs the pinned TF.js for the demo (web/).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[train,dev,export]"
# The demo page loads TF.js from web/node_modules (pinned by web/package-lock.json; no CDN).
# --ignore-scripts: no package's install scripts run (TF.js needs none).
(cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
echo "setup: done (.venv/bin/kdetect is ready)"
