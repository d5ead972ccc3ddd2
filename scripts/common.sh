# Shared settings for the scripts behind the Makefile. Sourced, not run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The PostgreSQL major everything is for: `make … PG=NN`. 15 is Debian 12's own; 17 and 18 are
# built by scripts/server.sh into $PG_INGEST_CACHE, outside the clone.
PG_MAJOR=${PG:-15}
SUPPORTED_MAJORS="15 17 18"
case " $SUPPORTED_MAJORS " in
    *" $PG_MAJOR "*) ;;
    *) echo "PG=$PG_MAJOR is not supported: use one of $SUPPORTED_MAJORS" >&2; exit 2 ;;
esac
PG_CACHE=${PG_INGEST_CACHE:-/var/cache/pg_ingest}
if [ "$PG_MAJOR" = 15 ]; then
    PG_ROOT=
    PORT_DEFAULT=54329
    PG_DIR=$REPO/.pg
    CITUS_BASE_PORT=54330
else
    PG_ROOT=$PG_CACHE/pg$PG_MAJOR/root
    PORT_DEFAULT=543$PG_MAJOR
    PG_DIR=$REPO/.pg$PG_MAJOR
    CITUS_BASE_PORT=543${PG_MAJOR:1}0   # 54370…
fi
PG_BIN=$PG_ROOT/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.0
PG_OS_USER=postgres

# The private cluster of this major; each listens on its own port, so they run side by side.
PG_DATA=$PG_DIR/data
PG_LOG=$PG_DIR/server.log
export PGHOST=127.0.0.1
export PGPORT=$PORT_DEFAULT
export PGUSER=${PGUSER:-postgres}
export PGDATABASE=${PGDATABASE:-postgres}

# cargo installed by rustup lives here; make sure it is found under sudo/make too.
export PATH="$HOME/.cargo/bin:/usr/local/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Run a command as the postgres OS user (PostgreSQL refuses to run as root).
as_pg() {
    if [ "$(id -un)" = "$PG_OS_USER" ]; then "$@"; else runuser -u "$PG_OS_USER" -- "$@"; fi
}

# Run as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Runs a build of someone else's tree as if from a shell, not from our make: PostgreSQL's makefiles
# generate their headers only at MAKELEVEL 0, and our MAKEFLAGS are not theirs.
fresh_make_env() { env -u MAKELEVEL -u MAKEFLAGS -u MFLAGS -u MAKEOVERRIDES "$@"; }

# Installs the Debian packages of the list that are missing, and only those.
install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# The workspace version (the extension's and the client's).
workspace_version() { sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1; }

# Builds the extension for this major in release mode (cargo pgrx package) and prints the
# directory it was staged under: the files are there at the paths of $PG_CONFIG.
build_extension() {
    # only this build's files (an earlier version's install script would be shipped too)
    as_root rm -rf "$REPO/target/release/pg_ingest-pg$PG_MAJOR"
    (cd "$REPO/extension" && as_root env "PATH=$PATH" "HOME=$HOME" ${PGRX_HOME:+"PGRX_HOME=$PGRX_HOME"} \
        cargo pgrx package --pg-config "$PG_CONFIG" >/dev/null)
    echo "$REPO/target/release/pg_ingest-pg$PG_MAJOR"
}

# The installed extension library, which the private cluster preloads.
installed_library() { echo "$("$PG_CONFIG" --pkglibdir)/pg_ingest.so"; }

# What the installed library is now: a server started with another must restart to load it.
library_stamp() { md5sum < "$(installed_library)" 2>/dev/null | cut -d' ' -f1; }

# Puts a file in place by renaming a full copy over it: a running server that maps the old
# library keeps its (now unlinked) file; writing into the mapped file in place would crash
# its next backends with signal 11.
install_atomically() {
    local src=$1 dst=$2 mode=$3 tmp
    tmp=$(dirname "$dst")/.$(basename "$dst").tmp.$$
    as_root install -m "$mode" "$src" "$tmp"
    as_root mv -f "$tmp" "$dst"
}

# Gives the installed library a new inode with the same bytes, so that a tool that writes
# over it in place (cargo pgrx test does) writes into a file no running server maps.
detach_installed_library() {
    local lib
    lib=$(installed_library)
    [ -f "$lib" ] && install_atomically "$lib" "$lib" 0755
    return 0
}
