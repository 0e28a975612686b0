#!/usr/bin/env bash
# Refresh the browser libraries in static/vendor/ from npm (`make vendor`).
# Versions are pinned here; bump one, run this, check VERSIONS.md and commit.
# Needs npm and tar; nothing else reaches the internet: pages load only these files.
set -euo pipefail

CENTRIFUGE_VERSION=5.8.0   # the official Centrifugo JavaScript SDK (MIT)
UPLOT_VERSION=1.6.32       # uPlot, small canvas time-series charts (MIT)

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "centrifuge@$CENTRIFUGE_VERSION" "uplot@$UPLOT_VERSION" >packed.txt
mkdir centrifuge uplot
tar -xzf "centrifuge-$CENTRIFUGE_VERSION.tgz" -C centrifuge
tar -xzf "uplot-$UPLOT_VERSION.tgz" -C uplot

rm -rf "$here/centrifuge" "$here/uplot"
mkdir -p "$here/centrifuge" "$here/uplot"
# The browser build (sets globalThis.Centrifuge); its source-map comment is dropped
# because the 400 kB map is not vendored.
grep -v '^//# sourceMappingURL=' centrifuge/package/dist/centrifuge.js >"$here/centrifuge/centrifuge.js"
cp centrifuge/package/LICENSE "$here/centrifuge/LICENSE"
cp uplot/package/dist/uPlot.iife.min.js uplot/package/dist/uPlot.min.css "$here/uplot/"
cp uplot/package/LICENSE "$here/uplot/LICENSE"

{
    echo "# Vendored browser libraries"
    echo
    echo "Refreshed by \`make vendor\` (static/vendor/refresh.sh) from the npm registry."
    echo "Pages load only these copies; nothing comes from the internet at run time."
    echo
    echo "| directory | npm package | version | licence | integrity of the npm tarball |"
    echo "|---|---|---|---|---|"
    for pkg in "centrifuge centrifuge $CENTRIFUGE_VERSION" "uplot uplot $UPLOT_VERSION"; do
        set -- $pkg
        integrity="$(npm view --silent "$2@$3" dist.integrity)"
        license="$(npm view --silent "$2@$3" license)"
        echo "| \`$1/\` | \`$2\` | $3 | $license (\`$1/LICENSE\`) | \`$integrity\` |"
    done
    echo
    echo "Files: \`centrifuge/centrifuge.js\` is the package's \`dist/centrifuge.js\` (JSON"
    echo "protocol browser build) without its source-map comment; \`uplot/\` holds"
    echo "\`dist/uPlot.iife.min.js\` and \`dist/uPlot.min.css\` unchanged."
} >"$here/VERSIONS.md"
echo "static/vendor: centrifuge $CENTRIFUGE_VERSION, uplot $UPLOT_VERSION"
