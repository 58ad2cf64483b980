#!/usr/bin/env bash
# Runs the Wren CLI from this checkout, building it first when the sources changed (incremental, idempotent).
# The build also applies the TorchSharp native-shim fix (build/TorchSharpLoadFix.targets).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$root/.wren/bin"
if [ ! -f "$out/Wren.Cli.dll" ] ||
   [ -n "$(find "$root/src" "$root/configs" "$root/tasks" "$root/build" \( -name bin -o -name obj \) -prune \
             -o -newer "$out/Wren.Cli.dll" \
             \( -name '*.cs' -o -name '*.csproj' -o -name '*.json' -o -name '*.yaml' -o -name '*.targets' \) -print -quit)" ]; then
  # bin/ and obj/ are build outputs (./test.sh rewrites obj/*.json): only sources make the CLI stale.
  echo "building Wren…" >&2
  if ! log="$(dotnet build "$root/src/Wren.Cli/Wren.Cli.csproj" -c Release -o "$out" --nologo -v quiet \
                 "-clp:ErrorsOnly;NoSummary" 2>&1)"; then
    printf '%s\n' "$log" >&2
    exit 1
  fi
fi
exec dotnet "$out/Wren.Cli.dll" "$@"
