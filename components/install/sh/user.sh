# pulumi-virt-pki, the part that runs as the user who owns the files (never as root for another user),
# so a symbolic link or a directory that user planted can only lead to the own files of that user.
# Arguments: prepare|commit|abort|remove LABEL HOME SUFFIX RECORDS [SELINUX]. RECORDS: one a line,
# "path group mode managed" for a directory, "path group mode lines sha256 claim" for a file.
set -euf
umask 077
LC_ALL=C
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL PATH
nl="
"
IFS=$nl
op=$1 label=$2 home=$3 sfx=$4 recs=$5
fail() {
  printf "%s\n" "virt-pki: $label: $*" >&2
  exit 1
}
hostp() {
  case $1 in
  \~*)
    [ -d "$home" ] || [ "$op" = abort ] || fail "the home directory $home is missing"
    hp=$home/${1#*/}
    ;;
  *) hp=$1 ;;
  esac
}
isdir() {
  if [ -L "$hp" ]; then fail "$1 is a symbolic link; refusing to follow it (remove it, then run again)"; fi
  if [ -e "$hp" ] && [ ! -d "$hp" ]; then fail "$1 is not a directory"; fi
}
bk="" bl=""
batch() {
  [ "$1" = "$bk" ] || flush
  bk=$1
  bl=$bl$2$nl
}
flush() {
  [ -n "$bl" ] || return 0
  # shellcheck disable=SC2086 # one path a line
  set -- $bl
  chmod -- "$bk" "$@" || fail "cannot give $* mode $bk"
  bl="" bk=""
}
cleanup() {
  trap - EXIT
  # shellcheck disable=SC2086 # one path a line
  [ -z "$tds" ] || rm -rf -- $tds
}
# Every directory of the records is checked (not a symbolic link); the temporary directories: $tds.
tds=""
while IFS=" " read -r p _ m a b _; do
  [ -n "$p" ] || continue
  hostp "$p"
  if [ -z "$b" ]; then
    isdir "$p"
  else
    case $nl$tds in *"$nl${hp%/*}/$sfx$nl"*) ;; *) tds=$tds${hp%/*}/$sfx$nl ;; esac
  fi
done <<EOF
$recs
EOF
# shellcheck disable=SC2086 # one path a line
set -- $tds
case $op in
# >>> install
abort)
  rm -rf -- "$@"
  exit 0
  ;;
# <<< install
# >>> remove
remove)
  set --
  while IFS=" " read -r p _ m a b _; do
    [ -n "$b" ] || continue
    hostp "$p"
    set -- "$@" "$hp"
  done <<EOF
$recs
EOF
  [ $# = 0 ] || rm -f -- "$@" || fail "cannot remove $*"
  exit 0
  ;;
# <<< remove
# >>> install
prepare)
  trap cleanup EXIT
  trap "exit 129" HUP
  trap "exit 143" TERM
  while IFS=" " read -r p _ m a b _; do
    [ -n "$p" ] && [ -z "$b" ] || continue
    hostp "$p"
    if [ ! -e "$hp" ]; then
      mkdir -- "$hp" || fail "cannot create $p"
      a=1
    fi
    [ "$a" = 0 ] || batch "$m" "$hp"
  done <<EOF
$recs
EOF
  flush
  [ $# = 0 ] || mkdir -- "$@" 2>/dev/null || { rm -rf -- "$@" && mkdir -- "$@"; } || fail "cannot create $*"
  set --
  while IFS=" " read -r p _ m a b _ <&3; do
    [ -n "$b" ] || continue
    hostp "$p"
    t=${hp%/*}/$sfx/${hp##*/}
    i=0
    while [ "$i" -lt "$a" ]; do
      IFS= read -r line || fail "the file data ended early; nothing was replaced"
      printf "%s\n" "$line"
      i=$((i + 1))
    done >"$t"
    set -- "$@" "$t"
    if [ -f "$hp" ] && [ ! -L "$hp" ]; then set -- "$@" "$hp"; fi
  done 3<<EOF
$recs
EOF
  sums=$nl
  [ $# = 0 ] || sums=$nl$(sha256sum -- "$@")$nl
  set --
  while IFS=" " read -r p _ m a b _; do
    [ -n "$b" ] || continue
    hostp "$p"
    t=${hp%/*}/$sfx/${hp##*/}
    case $sums in *"$nl$b  $t$nl"*) ;; *) fail "$p: the data received does not match its sha256; nothing was replaced" ;; esac
    case $sums in
    *"$nl$b  $hp$nl"*) set -- "$@" "$t" ;;
    *)
      batch "$m" "$t"
      echo changed
      ;;
    esac
  done <<EOF
$recs
EOF
  flush
  [ $# = 0 ] || rm -f -- "$@"
  trap - EXIT
  ;;
commit)
  moves=""
  while IFS=" " read -r p _ m a b _; do
    [ -n "$b" ] || continue
    hostp "$p"
    t=${hp%/*}/$sfx/${hp##*/}
    if [ -f "$t" ]; then moves=$moves$t$nl; else batch "$m" "$hp"; fi
  done <<EOF
$recs
EOF
  flush
  if [ -n "$moves" ]; then
    # shellcheck disable=SC2086 # one path a line
    set -- $moves
    sync -- "$@" 2>/dev/null || sync
    for d in $tds; do
      set --
      for t in $moves; do
        case $t in "$d"/*) set -- "$@" "$t" ;; esac
      done
      [ $# = 0 ] || mv -f -- "$@" "${d%/*}/" || fail "cannot replace files in ${d%/*}"
    done
  fi
  # shellcheck disable=SC2086 # one path a line
  rm -rf -- $tds
  set --
  while IFS=" " read -r p _ m a b _; do
    [ -n "$b" ] || continue
    hostp "$p"
    set -- "$@" "$hp"
  done <<EOF
$recs
EOF
  if [ "${6:-0}" = 1 ] && command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then
    restorecon -F -- "$@" </dev/null || fail "restorecon failed"
  fi
  sums=$nl$(sha256sum -- "$@")$nl
  stats=$nl$(stat -c "%a %U %G %n" -- "$@")$nl
  while IFS=" " read -r p _ m a b _; do
    [ -n "$b" ] || continue
    hostp "$p"
    s=${sums%%"  $hp$nl"*}
    t=${stats%%" $hp$nl"*}
    printf "virt-pki-file %s %s %s\n" "$p" "${s##*"$nl"}" "${t##*"$nl"}"
  done <<EOF
$recs
EOF
  ;;
# <<< install
esac
