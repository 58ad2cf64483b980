#!/usr/bin/env bash
# Runs the Wren CLI from this checkout, building it first when the sources changed (incremental, idempotent).
# The build also applies the TorchSharp native-shim fix (build/TorchSharpLoadFix.targets).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$root/.wren/bin"
if [ ! -f "$out/Wren.Cli.dll" ] ||
   [ -n "$(find "$root/src" "$root/configs" "$root/build" -newer "$out/Wren.Cli.dll" \
             \( -name '*.cs' -o -name '*.csproj' -o -name '*.json' -o -name '*.targets' \) -print -quit)" ]; then
  echo "building Wren…" >&2
  dotnet build "$root/src/Wren.Cli/Wren.Cli.csproj" -c Release -o "$out" --nologo -v quiet "-clp:ErrorsOnly;NoSummary" >&2
fi
exec dotnet "$out/Wren.Cli.dll" "$@"
