#!/usr/bin/env bash
# Make sure the graphviz `dot` binary exists (needed by `hiervae render` for svg/png/pdf;
# `hiervae render --dot` writes DOT source without it). Installs it where we are root on
# Debian/Ubuntu; otherwise says how, and carries on: everything else works without it.
set -u
if command -v dot >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing graphviz (the dot binary) with apt-get ..."
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz) >/dev/null 2>&1; then
    exit 0
  fi
  echo "warning: apt-get install graphviz failed; install it yourself to render pictures" >&2
  exit 0
fi
echo "note: the graphviz dot binary is missing; to render pictures install it:" >&2
echo "      sudo apt-get install graphviz   (Debian/Ubuntu)   |   brew install graphviz   (macOS)" >&2
exit 0
