# The file engine of pulumi-virt-pki: places the files of ONE part of the plan (root, or one user). Root
# runs it for the part of root; each user part runs as that user (setpriv, no privileges), so a symbolic
# link a user planted can only lead to files of that same user. No single quote in this file: it travels
# as the single-quoted value of $fx.
# Arguments: OP LABEL HOME ROOT SUFFIX WRITER UID OWNERS QGROUP RECORDS SELINUX SWITCHED; RECORDS: the
# records of the part alone, its "part WRITER SWITCH BYTES" line first.
# OP put: check (root: every directory on the way) and create the directories, receive the files from
# stdin into SUFFIX directories next to their targets, check every sha256, set owners and modes, print
# "changed PATH" for each file that differs; nothing is replaced. commit: rename the new files over their targets and
# print the manifest. abort: remove the SUFFIX directories.
set -euf
umask 077
LC_ALL=C
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL PATH
nl="
"
IFS=$nl
op=$1 label=$2 home=$3 root=$4 sfx=$5 me=$6 uid=$7 own=$8 qg=$9 rs=${10}
fail() {
  printf "%s\n" "virt-pki: $label: $*" >&2
  exit 1
}
bytes=${rs%%"$nl"*}
bytes=${bytes##* }
rs=${rs#*"$nl"}
# rec RECORD: its fields, k p o g m a b r (a: managed or lines; b: sha256; r: the digest the manifest
# shows, an HMAC for a secret file, so that the plain sha256 of a secret never leaves the secret stdin).
rec() {
  IFS=" "
  # shellcheck disable=SC2086 # the fields of one record
  set -- $1
  IFS=$nl
  k=$1 p=$2 o=$3 g=$4 m=$5 a=${6-} b=${7-} r=${9-}
}
hostp() {
  case $1 in \~*) hp=$home/${1#*/} ;; *) hp=$root$1 ;; esac
}
acct() {
  case $1 in
  @qemu) ac=$qg ;;
  @primary:*) ac=$(id -g -- "${1#@primary:}") || fail "user ${1#@primary:} does not exist on this host" ;;
  *) ac=$1 ;;
  esac
}
# Owners and modes in batches: entries with the same "owner group mode" in a row share one chown, one chmod.
bk="" bl=""
batch() {
  [ "$1" = "$bk" ] || flush
  bk=$1
  bl=$bl$2$nl
}
flush() {
  [ -n "$bl" ] || return 0
  IFS=" " read -r _o _g _m <<EOF
$bk
EOF
  # Files just received are ours (owner and group, unless a directory passes its group on) and 0600.
  _c="" _n=""
  for _f in $bl; do
    if [ "$_o:$_g:$uid" != root:root:0 ] || [ ! -O "$_f" ] || [ ! -G "$_f" ]; then _c=$_c$_f$nl; fi
    case $_f in */"$sfx"/*) [ "$_m" = 0600 ] || _n=$_n$_f$nl ;; *) _n=$_n$_f$nl ;; esac
  done
  bl="" bk=""
  if [ "$own" = 1 ] && [ -n "$_c" ]; then
    acct "$_o"
    _a=$ac
    acct "$_g"
    # shellcheck disable=SC2086 # one path a line
    chown -- "$_a:$ac" $_c || fail "cannot give $_c owner $_o:$_g"
  fi
  # shellcheck disable=SC2086 # one path a line
  [ -z "$_n" ] || chmod -- "$_m" $_n || fail "cannot give $_n mode $_m"
}
tds=""
for l in $rs; do
  rec "$l"
  [ "$k" = f ] || continue
  hostp "$p"
  case $nl$tds in *"$nl${hp%/*}/$sfx$nl"*) ;; *) tds=$tds${hp%/*}/$sfx$nl ;; esac
done
cleanup() {
  trap - EXIT
  # shellcheck disable=SC2086 # one path a line
  [ -z "$tds" ] || rm -rf -- $tds
}
case $op in
abort) cleanup ;;
put)
  trap cleanup EXIT
  trap "exit 129" HUP
  trap "exit 143" TERM
  trap "exit 141" PIPE
  case $rs in *" ~"*) [ -d "$home" ] || fail "the home directory $home is missing" ;; esac
  # Root (and a part not run as its user) writes only below directories no other user can change: each
  # existing one from / down (a sticky one owned by root, like /tmp, allowed) must be a real directory owned
  # by root or the SSH user, not writable by group or others. Then nobody else can swap a directory or plant
  # a link between this check and the writes. The own top directory of a user is not checked: root creates and
  # chowns it in a checked parent; nothing root writes may lie below it.
  mk="" nr=""
  set -- "${root:-/}"
  d=$root
  while [ -n "$d" ]; do
    d=${d%/*}
    set -- "$@" "${d:-/}"
  done
  case $rs in *" ~root/"*) set -- "$@" "$home" ;; esac
  for l in $rs; do
    rec "$l"
    [ "$k" = d ] || continue
    hostp "$p"
    if [ -L "$hp" ]; then fail "$p is a symbolic link; refusing to follow it (remove it, then run again)"; fi
    if [ -e "$hp" ] && [ ! -d "$hp" ]; then fail "$p is not a directory"; fi
    [ -e "$hp" ] || mk=$mk$hp$nl
    if [ "$me" = root ] && [ "$o" != root ]; then
      nr=$nr$hp/$nl
      continue
    fi
    for x in $nr; do
      case $hp/ in "$x"?*) fail "$p lies in ${x%/}, which another user owns; refusing to write there as root" ;; esac
    done
    while [ -n "$hp" ] && [ "$hp" != "$root" ]; do
      [ ! -e "$hp" ] || set -- "$@" "$hp"
      hp=${hp%/*}
    done
  done
  if [ "$me" = root ] || [ "${12:-1}" = 0 ]; then
    f=$(find "$@" -maxdepth 0 \( \! -type d -o \( -perm /022 \! -perm -1000 \) -o \( \! -uid 0 \! -uid "$uid" \) \) -printf "%p (%M %u) ")
    [ -z "$f" ] || fail "refusing to write below ${f}as uid $uid: a directory on the way is a symbolic link, or another user owns or can write it; nothing was changed"
  fi
  for d in $tds; do [ ! -e "$d" ] || rm -rf -- "$d"; done
  # shellcheck disable=SC2086 # one path a line: missing directories (parents first), then temporary ones
  [ -z "$mk$tds" ] || mkdir -- $mk $tds || fail "cannot create $mk$tds"
  for l in $rs; do
    rec "$l"
    [ "$k" = d ] || continue
    hostp "$p"
    case $nl$mk in *"$nl$hp$nl"*) a=1 ;; esac
    [ "$a" = 0 ] || batch "$o $g $m" "$hp"
  done
  flush
  # Receive: root takes its part off the pipe with one head -c, which never reads past it, into a
  # private file that the shell then splits (a shell reads a pipe byte by byte, a file in blocks); a
  # user part arrives as a file. Exactly the number of lines announced for each file.
  if [ "$me" = root ] && [ "$bytes" != 0 ]; then
    raw=${tds%%"$nl"*}/.in
    head -c "$bytes" >"$raw" || fail "cannot receive the file data"
    exec 4<"$raw"
  else
    exec 4<&0
  fi
  set --
  for l in $rs; do
    rec "$l"
    [ "$k" = f ] || continue
    hostp "$p"
    if [ -d "$hp" ] && [ ! -L "$hp" ]; then fail "$p is a directory"; fi
    i=0
    while [ "$i" -lt "$a" ]; do
      IFS= read -r line <&4 || fail "the file data ended early (connection lost?); nothing was replaced"
      printf "%s\n" "$line"
      i=$((i + 1))
    done >"${hp%/*}/$sfx/${hp##*/}"
    set -- "$@" "${hp%/*}/$sfx/${hp##*/}"
    if [ -f "$hp" ] && [ ! -L "$hp" ]; then set -- "$@" "$hp"; fi
  done
  # One sha256sum for every file received and every current target.
  s=$nl
  [ $# = 0 ] || s=$nl$(sha256sum -- "$@")$nl
  set --
  for l in $rs; do
    rec "$l"
    [ "$k" = f ] || continue
    hostp "$p"
    t=${hp%/*}/$sfx/${hp##*/}
    case $s in *"$nl$b  $t$nl"*) ;; *) fail "$p: the data received does not match its sha256; nothing was replaced" ;; esac
    case $s in
    *"$nl$b  $hp$nl"*)
      set -- "$@" "$t"
      batch "$o $g $m" "$hp"
      ;;
    *)
      batch "$o $g $m" "$t"
      printf "changed %s\n" "$p"
      ;;
    esac
  done
  flush
  [ $# = 0 ] || rm -f -- "$@"
  trap - EXIT
  ;;
commit)
  mv=""
  for l in $rs; do
    rec "$l"
    [ "$k" = f ] || continue
    hostp "$p"
    [ ! -f "${hp%/*}/$sfx/${hp##*/}" ] || mv=$mv${hp%/*}/$sfx/${hp##*/}$nl
  done
  # shellcheck disable=SC2086 # one path a line
  [ -z "$mv" ] || sync -- $mv 2>/dev/null || sync
  for d in $tds; do
    set --
    for t in $mv; do
      case $t in "$d"/*) set -- "$@" "$t" ;; esac
    done
    [ $# = 0 ] || mv -f -- "$@" "${d%/*}/" || fail "cannot replace files in ${d%/*}"
  done
  cleanup
  case $rs in *" ~"*) printf "virt-pki-home %s %s\n" "$me" "$home" ;; esac
  set --
  for l in $rs; do
    rec "$l"
    [ "$k" = f ] || continue
    hostp "$p"
    set -- "$@" "$hp"
  done
  [ $# != 0 ] || exit 0
  # SELinux (11th argument): 1 the policy labels (cert_t under /etc/pki), 2 also cert_t elsewhere.
  if [ "${11:-0}" != 0 ] && command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then
    restorecon -F -- "$@" </dev/null || fail "restorecon failed"
    if [ "${11}" = 2 ]; then
      for f in "$@"; do
        case ${f#"$root"} in /etc/pki/*) ;; *) chcon -t cert_t -- "$f" </dev/null || fail "chcon failed" ;; esac
      done
    fi
  fi
  # The manifest: each file with its shown digest (put checked its sha256 on this host), and its mode
  # and owners read back.
  st=$nl$(stat -c "%a %U %G %n" -- "$@")$nl
  for l in $rs; do
    rec "$l"
    [ "$k" = f ] || continue
    hostp "$p"
    t=${st%%" $hp$nl"*}
    printf "virt-pki-file %s %s %s\n" "$p" "$r" "${t##*"$nl"}"
  done
  ;;
esac
