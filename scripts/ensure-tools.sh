#!/usr/bin/env bash
# Make sure the media tools the pipeline shells out to are installed (from Debian if absent):
# ffmpeg/ffprobe (probe, frames, audio), espeak-ng (spoken sample and test media), tesseract with
# its English and German models (ocr), the DejaVu fonts (text the OCR tests render), Pango (WeasyPrint
# lays out the PDF report with it), and with --test also Chromium and poppler-utils (the report
# tests open the HTML and the PDF as a person would: a headless screenshot, pdftoppm and pdftotext)
# and Prometheus for its promtool (the chart's alerting rules are tested against recorded samples).
set -euo pipefail
for_tests=false
[ "${1:-}" = "--test" ] && for_tests=true
missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
langs=$(tesseract --list-langs 2>/dev/null || true)
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
grep -qx eng <<<"$langs" || missing+=(tesseract-ocr-eng)
grep -qx deu <<<"$langs" || missing+=(tesseract-ocr-deu)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
libs=$(ldconfig -p 2>/dev/null || true)
grep -q 'libpango-1\.0\.so\.0' <<<"$libs" || missing+=(libpango-1.0-0)
grep -q 'libpangoft2-1\.0\.so\.0' <<<"$libs" || missing+=(libpangoft2-1.0-0)
if $for_tests; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v pdftoppm >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1 || missing+=(poppler-utils)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-tools: installing ${missing[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
