#!/usr/bin/env bash
# The PostgreSQL server of the major in $PG (15, 17 or 18), with its dev files and pg_cron.
#   server.sh install | pristine | root
# 15 is Debian 12's own (apt). 17 and 18 are not in Debian 12's suites: they are built once from
# Debian's source tarballs (fetched from the Debian mirror this machine's apt already uses, checked
# against the checksums Debian publishes or pinned here) into $PG_INGEST_CACHE (default
# /var/cache/pg_ingest), outside the clone, so a fresh clone reuses them:
#   $PG_INGEST_CACHE/pgNN/pristine  the server as built, in Debian's layout (usr/lib/postgresql/NN/…,
#                                   usr/share/postgresql/NN/…); never touched afterwards
#   $PG_INGEST_CACHE/pgNN/root      a copy of it, where pg_cron, Citus and pg_ingest are installed
# Both are relocatable: PostgreSQL finds its lib and share directories relative to its binaries.
source "$(dirname "$0")/common.sh"

# pg_cron for 17 and 18 (Debian's source package)
PG_CRON_PACKAGE=pg-cron

# The Debian mirror apt is configured with (never a host named here).
debian_mirror() {
    local uri
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -E '/debian/?$' | head -1)
    [ -n "$uri" ] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -E '/debian/?$' | head -1)
    [ -n "$uri" ] || { echo "no Debian mirror found in /etc/apt/sources.list*" >&2; exit 1; }
    echo "${uri%/}"
}

# A private apt state that knows the source packages of sid and trixie; the system's own sources
# are left as they are.
APT_DIR=$PG_CACHE/apt
apt_src() {
    local tool=$1; shift
    "$tool" -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$APT_DIR/sources.list.d" \
        -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" "$@"
}
apt_src_update() {
    [ -n "$(find "$APT_DIR/lists" -name '*Sources*' -mmin -1440 2>/dev/null)" ] && return
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache" "$APT_DIR/sources.list.d"
    cat > "$APT_DIR/sources.list.d/debian-src.sources" <<SRC
Types: deb-src
URIs: $(debian_mirror)
Suites: sid trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_src apt-get -qq update
}

# Downloads the newest .orig tarball of source package $1 into $2 and prints its path; the sha256
# is the one in the signed Sources index. When the mirror no longer has it, $3 (file name) with the
# pinned sha256 $4 is tried.
fetch_orig() {
    local pkg=$1 dir=$2 pinned=${3:-} pinned_sha=${4:-} file sha directory
    apt_src_update
    read -r directory file sha < <(apt_src apt-cache showsrc "$pkg" 2>/dev/null | awk '
        /^Package:/ {pkg=1} /^Directory:/ {d=$2}
        /^Checksums-Sha256:/ {s=1; next} /^[^ ]/ {s=0}
        s && $3 ~ /\.orig\.tar\./ {f=$3; h=$1}
        /^$/ && f != "" {print d, f, h; exit}
        END {if (f != "") print d, f, h}' | head -1)
    local mirror; mirror=$(debian_mirror)
    if [ -n "$file" ] && curl -fsS -o "$dir/$file" "$mirror/$directory/$file" 2>/dev/null; then
        :
    elif [ -n "$pinned" ]; then
        file=$pinned sha=$pinned_sha
        curl -fsS -o "$dir/$file" "$mirror/pool/main/${pkg:0:1}/$pkg/$file" \
            || { echo "could not download $file from $mirror" >&2; exit 1; }
    else
        echo "could not download the source of $pkg from $mirror" >&2; exit 1
    fi
    echo "$sha  $dir/$file" | sha256sum -c --quiet >&2 || { echo "checksum mismatch: $file" >&2; exit 1; }
    echo "$dir/$file"
}

build_server() {
    local out=$PG_CACHE/pg$PG_MAJOR build tarball tree
    install_packages build-essential bison flex libreadline-dev zlib1g-dev libssl-dev liblz4-dev \
        libzstd-dev pkg-config curl patchelf
    build=$(mktemp -d)
    case $PG_MAJOR in
        17) tarball=$(fetch_orig postgresql-17 "$build" postgresql-17_17.11.orig.tar.bz2 \
                dd27f2b3c59e73ed14aa3324901242bf69a032a6347805f274e6260322d42979) ;;
        18) tarball=$(fetch_orig postgresql-18 "$build") ;;
    esac
    say "building PostgreSQL from $(basename "$tarball") into $out (about 3 minutes)"
    tar -xjf "$tarball" -C "$build"
    tree=$(find "$build" -maxdepth 1 -mindepth 1 -type d | head -1)
    # Debian's layout, so that the packages (`make package`) put files where Debian's
    # postgresql-NN looks for them
    if ! (cd "$tree" && fresh_make_env ./configure --prefix=/usr/lib/postgresql/$PG_MAJOR \
        --datadir=/usr/share/postgresql/$PG_MAJOR --includedir=/usr/include/postgresql \
        --disable-rpath --with-openssl --with-lz4 --with-zstd --without-icu \
        && fresh_make_env make -j"$(nproc)" world-bin \
        && rm -rf "$out/pristine.tmp" && fresh_make_env make install-world-bin DESTDIR="$out/pristine.tmp") > "$build/build.log" 2>&1
    then
        tail -n 40 "$build/build.log" >&2
        echo "building PostgreSQL $PG_MAJOR failed (log above)" >&2
        exit 1
    fi
    # its own libpq, found next to the binaries wherever the tree is copied
    local f
    for f in "$out/pristine.tmp/usr/lib/postgresql/$PG_MAJOR"/bin/* "$out/pristine.tmp/usr/lib/postgresql/$PG_MAJOR"/lib/*.so; do
        if [ -f "$f" ] && [ ! -L "$f" ] && readelf -d "$f" 2>/dev/null | grep -q 'NEEDED.*libpq\.so'; then
            case $f in */bin/*) patchelf --set-rpath '$ORIGIN/../lib' "$f" ;; *) patchelf --set-rpath '$ORIGIN' "$f" ;; esac
        fi
    done
    rm -rf "$out/pristine" && mv "$out/pristine.tmp" "$out/pristine"
    rm -rf "$build"
}

build_pg_cron() {
    local build tarball tree
    build=$(mktemp -d)
    tarball=$(fetch_orig "$PG_CRON_PACKAGE" "$build" pg-cron_1.6.7.orig.tar.gz \
        d950bc29155f31017567e23a31d268ff672e98276c0e9d062512fb7870351f03)
    say "building pg_cron from $(basename "$tarball") for PostgreSQL $PG_MAJOR"
    tar -xzf "$tarball" -C "$build"
    tree=$(find "$build" -maxdepth 1 -mindepth 1 -type d | head -1)
    if ! (cd "$tree" && fresh_make_env make PG_CONFIG="$PG_CONFIG" && fresh_make_env make install PG_CONFIG="$PG_CONFIG") > "$build/build.log" 2>&1; then
        tail -n 40 "$build/build.log" >&2
        echo "building pg_cron failed (log above)" >&2
        exit 1
    fi
    patchelf --set-rpath '$ORIGIN' "$("$PG_CONFIG" --pkglibdir)/pg_cron.so"
    rm -rf "$build"
}

# 15's pristine server: Debian's postgresql-15 package, unpacked (for the package and upgrade
# tests, which need a server that has never seen a build of this tree).
unpack_debian_server() {
    local out=$PG_CACHE/pg$PG_MAJOR build
    build=$(mktemp -d)
    chmod 755 "$build"
    (cd "$build" && as_root apt-get download -q "postgresql-$PG_MAJOR=$(dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR")" >/dev/null 2>&1)
    rm -rf "$out/pristine.tmp" && mkdir -p "$out"
    dpkg-deb -x "$build"/postgresql-"$PG_MAJOR"_*.deb "$out/pristine.tmp"
    mv "$out/pristine.tmp" "$out/pristine"
    rm -rf "$build"
}

install_server() {
    if [ "$PG_MAJOR" = 15 ]; then
        install_packages postgresql-15 postgresql-server-dev-15 postgresql-15-cron
        as_root mkdir -p "$PG_CACHE"
        [ -x "$PG_CACHE/pg15/pristine/usr/lib/postgresql/15/bin/postgres" ] || unpack_debian_server
        chmod -R a+rX "$PG_CACHE/pg15"
        return
    fi
    as_root mkdir -p "$PG_CACHE"
    [ -x "$PG_CACHE/pg$PG_MAJOR/pristine/usr/lib/postgresql/$PG_MAJOR/bin/postgres" ] || build_server
    if [ ! -x "$PG_BIN/postgres" ]; then
        rm -rf "$PG_ROOT.tmp" && cp -a "$PG_CACHE/pg$PG_MAJOR/pristine" "$PG_ROOT.tmp" && mv "$PG_ROOT.tmp" "$PG_ROOT"
    fi
    [ -f "$("$PG_CONFIG" --pkglibdir)/pg_cron.so" ] || build_pg_cron
    # the postgres user runs the server from here
    chmod -R a+rX "$PG_CACHE/pg$PG_MAJOR"
    say "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') with pg_cron in $PG_ROOT"
}

case "${1:-}" in
    install) install_server ;;
    pristine) echo "$PG_CACHE/pg$PG_MAJOR/pristine" ;;
    root) echo "${PG_ROOT:-/}" ;;
    *) echo "usage: PG=15|17|18 $0 install|pristine|root" >&2; exit 2 ;;
esac
