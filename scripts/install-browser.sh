#!/usr/bin/env bash
# Debian's Chromium for the console's browser tests (tests/test_console_browser.py drive it with Playwright),
# and a CJK font so the screenshots of the Chinese console show characters, not boxes.
# Idempotent: does nothing when /usr/bin/chromium and the font exist. As root it installs the package; otherwise it says
# what to run, and the browser tests skip with that reason until it is there.
set -euo pipefail

FONT=/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc
if [ -x /usr/bin/chromium ] && [ -e "$FONT" ]; then
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present) at /usr/bin/chromium"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be missing in a fresh container: refresh them only when the install cannot find it.
    PACKAGES="chromium fonts-wqy-zenhei"
    apt-get install -y --no-install-recommends $PACKAGES || { apt-get update && apt-get install -y --no-install-recommends $PACKAGES; }
    echo "chromium installed: $(/usr/bin/chromium --version 2>/dev/null || true)"
else
    echo "chromium is missing: run  sudo apt-get install -y --no-install-recommends chromium fonts-wqy-zenhei" >&2
    echo "(the console's browser tests skip until /usr/bin/chromium exists)" >&2
fi
