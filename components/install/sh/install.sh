# Install. Nothing is replaced until every file has arrived and matched its sha256: root's files go into a
# private directory (0700) next to their target and are then renamed over it (rename(2): atomic); each
# user's files are written by that user's part, which does the same in the user's own directories.
resolve_users 1
qgroup=''
if [ -n "$qemu" ]; then
  if [ "$qemu" != - ]; then
    qgroup=$qemu
    getent group "$qgroup" >/dev/null 2>&1 </dev/null || fail "group $qgroup (qemuGroup) does not exist"
  elif getent group qemu >/dev/null 2>&1 </dev/null; then
    qgroup=qemu
  elif getent group libvirt-qemu >/dev/null 2>&1 </dev/null; then
    qgroup=libvirt-qemu
  else
    fail "neither group qemu (Fedora/RHEL) nor libvirt-qemu (Debian/Ubuntu) exists: install QEMU first, or set qemuGroup"
  fi
fi
for c in sha256sum stat find mv chmod; do
  command -v "$c" >/dev/null 2>&1 || fail "$c is missing on this host"
done
# Account token -> $ac: the QEMU group, a user's primary group id, or the name itself.
acctof() {
  case $1 in
  @qemu) ac=$qgroup ;;
  @primary:*)
    ulookup "${1#@primary:}" || fail "internal: no user for $1"
    ac=$U_gid
    ;;
  *) ac=$1 ;;
  esac
}

# Batched owner and mode changes: entries with the same "owner group mode" key in a row share one
# chown and one chmod.
bk='' bl=''
batch() {
  [ "$1" = "$bk" ] || flush
  bk=$1
  bl=$bl$2$nl
}
flush() {
  [ -n "$bl" ] || return 0
  IFS=' ' read -r _o _g _m <<EOF
$bk
EOF
  # shellcheck disable=SC2086 # one path a line
  set -- $bl
  bl='' bk=''
  if [ "$owners" = 1 ]; then
    acctof "$_o"
    _a=$ac
    acctof "$_g"
    chown -- "$_a:$ac" "$@" || fail "cannot give $* owner $_o, group $_g"
  fi
  chmod -- "$_m" "$@" || fail "cannot give $* mode $_m"
}

tmps='' pend=''
cleanup() {
  trap - EXIT
  while IFS= read -r u; do
    [ -z "$u" ] || { records "$u" "$files" && asuser "$u" abort "$sfx" "$r" </dev/null; } || true
  done <<EOF
$pend
EOF
  # shellcheck disable=SC2086 # one path a line
  [ -z "$tmps" ] || rm -rf -- $tmps
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
sfx=.virt-pki.$$
if [ "$local" = 1 ] && [ ! -d "$root" ]; then (umask 022 && mkdir -p -- "$root"); fi

# 1. Directories: check every directory on the way, create what is missing, set owners and modes.
cl=$root$state/claims
chain "$root$state" "$cl"
pd='' ulist=''
while IFS=' ' read -r c p o g m k; do
  [ -n "$c" ] || continue
  hostpath "$p"
  case $c in
  r)
    chain "$hp"
    pd=$pd$hp$nl
    ;;
  t) # a user's top directory: root creates it and gives it to the user, in a directory only root changes
    chain "${hp%/*}"
    if [ -L "$hp" ] || { [ -e "$hp" ] && [ ! -d "$hp" ]; }; then fail "$p is not a directory"; fi
    [ -e "$hp" ] || missing=$missing$hp$nl
    pd=$pd$hp$nl
    ;;
  u)
    case $nl$ulist in *"$nl$o$nl"*) ;; *) ulist=$ulist$o$nl ;; esac
    # A staging tree (local install) gets the home folders the plan needs; a real host must have them.
    if [ "$local" = 1 ] && [ ! -d "$U_home" ] && [ "${p#\~}" != "$p" ]; then
      (umask 022 && mkdir -p -- "$U_home")
      [ "$owners" = 0 ] || chown -- "$U_uid:$U_gid" "$U_home"
    fi
    ;;
  esac
done <<EOF
$dirs
EOF
tds=$cl/$sfx$nl
while IFS=' ' read -r c p o g m n h x; do
  [ "$c" = r ] || continue
  hostpath "$p"
  case $nl$tds in *"$nl${hp%/*}/$sfx$nl"*) ;; *) tds=$tds${hp%/*}/$sfx$nl ;; esac
done <<EOF
$files
EOF
checkchain
if [ -n "$missing" ]; then
  # shellcheck disable=SC2086 # one path a line, parents first
  set -- $missing
  mkdir -- "$@" || fail "cannot create $*"
fi
while IFS=' ' read -r c p o g m k; do
  [ -n "$c" ] && [ "$c" != u ] || continue
  hostpath "$p"
  case $nl$missing in *"$nl$hp$nl"*) k=1 ;; esac
  [ "$k" = 0 ] || batch "$o $g $m" "$hp"
done <<EOF
$dirs
EOF
# Created directories that no layout plans: state, claims, parents of a layout's directory.
while IFS= read -r d; do
  [ -n "$d" ] || continue
  case $nl$pd in *"$nl$d$nl"*) continue ;; esac
  if [ "$d" = "$cl" ]; then batch "root root 0700" "$d"; else batch "root root 0755" "$d"; fi
done <<EOF
$missing
EOF
flush
# shellcheck disable=SC2086 # one path a line
set -- $tds
tmps=$tds
mkdir -- "$@" 2>/dev/null || { rm -rf -- "$@" && mkdir -- "$@"; } || fail "cannot create temporary directories $*"
stage=$cl/$sfx

# 2. Receive every file: root's into the private directory next to its target, each user's into one
#    stream for that user's part. Exactly the planned number of lines each, then the end of stdin.
recv() {
  i=0
  while [ "$i" -lt "$1" ]; do
    IFS= read -r line || fail "the file data ended early (connection lost?); nothing was replaced"
    printf '%s\n' "$line"
    i=$((i + 1))
  done
}
while IFS=' ' read -r c p o g m n h x <&3; do
  [ -n "$c" ] || continue
  if [ "$c" = r ]; then
    hostpath "$p"
    recv "$n" >"${hp%/*}/$sfx/${hp##*/}"
  else
    recv "$n" >>"$stage/$o"
  fi
done 3<<EOF
$files
EOF
if IFS= read -r line; then fail "stdin holds more than the plan announced; nothing was replaced"; fi

# 3. Check: one sha256sum over every received file and every current target; then owners and modes.
set --
while IFS=' ' read -r c p o g m n h x; do
  [ "$c" = r ] || continue
  hostpath "$p"
  if [ -d "$hp" ] && [ ! -L "$hp" ]; then fail "$p is a directory"; fi
  set -- "$@" "${hp%/*}/$sfx/${hp##*/}"
  if [ -f "$hp" ] && [ ! -L "$hp" ]; then set -- "$@" "$hp"; fi
done <<EOF
$files
EOF
sums=$nl
[ $# = 0 ] || sums=$nl$(sha256sum -- "$@")$nl
while IFS=' ' read -r c p o g m n h x; do
  [ "$c" = r ] || continue
  hostpath "$p"
  case $sums in *"$nl$h  ${hp%/*}/$sfx/${hp##*/}$nl"*) ;; *) fail "$p: the data received does not match its sha256; nothing was replaced" ;; esac
done <<EOF
$files
EOF
changed=0 moves='' fin=''
while IFS=' ' read -r c p o g m n h x; do
  [ "$c" = r ] || continue
  hostpath "$p"
  fin=$fin$hp$nl
  case $sums in
  *"$nl$h  $hp$nl"*) batch "$o $g $m" "$hp" ;;
  *)
    batch "$o $g $m" "${hp%/*}/$sfx/${hp##*/}"
    moves=$moves${hp%/*}/$sfx/${hp##*/}$nl
    changed=1
    ;;
  esac
done <<EOF
$files
EOF
flush
while IFS= read -r u; do # each user's part: directories and files, received and checked as that user
  [ -n "$u" ] || continue
  records "$u" "$dirs"
  rd=$r
  records "$u" "$files"
  [ -f "$stage/$u" ] || : >"$stage/$u"
  # A failed prepare cleans up after itself; a later failure aborts the ones that succeeded.
  out=$(asuser "$u" prepare "$sfx" "$rd$r" <"$stage/$u") || exit 1
  pend=$pend$u$nl
  case $out in *changed*) changed=1 ;; esac
done <<EOF
$ulist
EOF

# 4. Replace: flush the new files to disk, then rename(2) them over their targets, one mv per directory.
if [ -n "$moves" ]; then
  # shellcheck disable=SC2086 # one path a line
  set -- $moves
  sync -- "$@" 2>/dev/null || sync
  while IFS= read -r d; do
    [ -n "$d" ] || continue
    set --
    while IFS= read -r t; do
      case $t in "$d"/*) set -- "$@" "$t" ;; esac
    done <<EOF
$moves
EOF
    [ $# = 0 ] || mv -f -- "$@" "${d%/*}/" || fail "cannot replace files in ${d%/*}"
  done <<EOF
$tds
EOF
fi
while IFS= read -r u; do
  [ -n "$u" ] || continue
  records "$u" "$files"
  asuser "$u" commit "$sfx" "$r" "$selinux" </dev/null || exit 1
done <<EOF
$pend
EOF
pend=''

# 5. Claims: a delete of this generation later removes only the files it still claims.
set --
while IFS=' ' read -r c p o g m n h x; do
  [ -n "$c" ] || continue
  printf '%s %s\n' "$gen" "$p" >"$stage/$x"
  set -- "$@" "$stage/$x"
done <<EOF
$files
EOF
[ $# = 0 ] || mv -f -- "$@" "$cl/" || fail "cannot record the claims in $cl"

# 6. SELinux: the policy's labels (cert_t under /etc/pki), cert_t elsewhere. Users' parts label their own.
if [ "$selinux" = 1 ] && [ "$local" = 0 ] && [ -n "$fin" ] && command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then
  # shellcheck disable=SC2086 # one path a line
  set -- $pd $fin
  restorecon -F -- "$@" </dev/null || fail "restorecon failed"
  set --
  while IFS= read -r f; do
    case $f in '' | /etc/pki/*) ;; *) set -- "$@" "$f" ;; esac
  done <<EOF
$pd$fin
EOF
  [ $# = 0 ] || chcon -t cert_t -- "$@" </dev/null || fail "chcon failed"
fi

# 7. Manifest: what is on the host now, read back (the program checks it against what it sent).
printf 'virt-pki-install %s changed=%s\n' "$gen" "$changed"
while IFS=' ' read -r n a b c d; do
  [ -z "$d" ] || printf 'virt-pki-home %s %s\n' "$n" "$d"
done <<EOF
$utab
EOF
if [ -n "$fin" ]; then
  # shellcheck disable=SC2086 # one path a line
  set -- $fin
  sums=$nl$(sha256sum -- "$@")$nl
  stats=$nl$(stat -c '%a %U %G %n' -- "$@")$nl
  while IFS=' ' read -r c p o g m n h x; do
    [ "$c" = r ] || continue
    hostpath "$p"
    s=${sums%%"  $hp$nl"*}
    t=${stats%%" $hp$nl"*}
    printf 'virt-pki-file %s %s %s\n' "$p" "${s##*"$nl"}" "${t##*"$nl"}"
  done <<EOF
$files
EOF
fi

# 8. Reload, only when some content changed.
if [ "$changed" = 1 ] && [ -n "$reload" ]; then
  # shellcheck disable=SC2086 # one word a line
  set -- $reload
  "$@" </dev/null >&2 || fail "the reload command failed; the new files are in place"
  echo virt-pki-reloaded
fi
