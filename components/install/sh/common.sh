# shellcheck disable=SC2034 # some plan fields (opts, qemu) are read only by the install part
# pulumi-virt-pki host script. This text is the same for every host and every plan: what to do (paths,
# owners, modes, hashes, users, generation, reload) arrives on stdin as a plan that is only ever read with
# `read` and used as quoted arguments, never run; the files' contents follow it.
# No pathname expansion anywhere, and unquoted lists split on newlines only (one path a line).
set -euf
umask 077
LC_ALL=C
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL PATH
nl='
'
IFS=$nl
label=virt-pki
fail() {
  printf '%s\n' "virt-pki: $label: $*" >&2
  exit 1
}
bad() { fail "the plan on stdin is malformed ($*); nothing was changed"; }

# Field checks: the plan was checked when it was made, and these keep the script safe without that.
flag() { case $1 in 0 | 1) ;; *) bad "flag $1" ;; esac; }
num() { case $1 in '' | *[!0-9]*) bad "number $1" ;; esac; }
hex() {
  case $1 in *[!0-9a-f]*) bad "hash $1" ;; esac
  [ ${#1} = "$2" ] || bad "hash $1"
}
acct() {
  case $1 in @qemu) return 0 ;; @primary:*) set -- "${1#@primary:}" ;; esac
  case $1 in [a-z_]*) ;; *) bad "account $1" ;; esac
  case $1 in *[!a-z0-9_-]*) bad "account $1" ;; esac
}
path() {
  case $1 in
  /?*) ;;
  \~?*/?*)
    u=${1%%/*}
    acct "${u#\~}"
    ;;
  *) bad "path $1" ;;
  esac
  case "$1/" in *//* | */./* | */../*) bad "path $1" ;; esac
}
mode() { case $1 in 0[0-7][0-7][0-7]) ;; *) bad "mode $1" ;; esac; }
ctx() { case $1 in r | t | u) ;; *) bad "context $1" ;; esac; }

# The plan: one record a line, ended by "end".
IFS= read -r line || fail "no plan on stdin (this command needs its stdin)"
[ "$line" = "virt-pki-plan 1" ] || fail "stdin does not start with a plan of format 1; nothing was changed"
gen='' owners=0 selinux=0 root='' local=0 state='' qemu='' reload='' users='' dirs='' files=''
while :; do
  IFS= read -r line || bad "no end record"
  k=${line%% *}
  v=${line#"$k"}
  v=${v# }
  case $k in
  label)
    label=$v
    continue
    ;;
  reload)
    reload=$reload$v$nl
    continue
    ;;
  end) break ;;
  esac
  case $v in '' | *[!A-Za-z0-9._@+/~:\ -]*) bad "record $k" ;; esac
  IFS=' '
  # shellcheck disable=SC2086 # the fields of one record
  set -- $v
  IFS=$nl
  case $k/$# in
  gen/1) hex "$1" 32 && gen=$1 ;;
  opts/2) flag "$1" && flag "$2" && owners=$1 selinux=$2 ;;
  root/1) path "$1" && root=$1 local=1 ;;
  state/1) path "$1" && state=$1 ;;
  qemu/1) { [ "$1" = - ] || acct "$1"; } && qemu=$1 ;;
  user/2) acct "$1" && flag "$2" && users=$users$v$nl ;;
  dir/6) ctx "$1" && path "$2" && acct "$3" && acct "$4" && mode "$5" && flag "$6" && dirs=$dirs$v$nl ;;
  file/8)
    ctx "$1" && path "$2" && acct "$3" && acct "$4" && mode "$5" && num "$6" && hex "$7" 64 && hex "$8" 64
    files=$files$v$nl
    ;;
  *) bad "record $k" ;;
  esac
done
if [ -z "$gen" ] || [ -z "$state" ]; then bad "no gen or state record"; fi
me=$(id -u)

# Users: "name uid gid switch home" (home last: it may hold spaces). Local installs put homes under the root.
utab=''
ulookup() {
  while IFS=' ' read -r _n _a _b _c _d; do
    if [ "$_n" = "$1" ]; then
      U_uid=$_a U_gid=$_b U_sw=$_c U_home=$_d
      return 0
    fi
  done <<EOF
$utab
EOF
  return 1
}
resolve_users() { # $1 = 1: a missing user is an error
  while IFS=' ' read -r _u _s; do
    [ -n "$_u" ] || continue
    _e=$(getent passwd -- "$_u" </dev/null) || _e=''
    _i=- _g=- _h=''
    if [ -n "$_e" ]; then
      IFS=: read -r _ _ _i _g _ _h _ <<EOF
$_e
EOF
    elif [ "$1" = 1 ] && { [ "$local" = 0 ] || [ "$_s" = 1 ] || [ "$owners" = 1 ]; }; then
      fail "user $_u does not exist on this host"
    fi
    if [ "$local" = 1 ]; then
      if [ "$_u" = root ]; then _h=$root/root; else _h=$root/home/$_u; fi
    fi
    utab="$utab$_u $_i $_g $_s $_h$nl"
  done <<EOF
$users
EOF
}
# Planned path -> $hp, the path on this host.
hostpath() {
  case $1 in
  \~*)
    _u=${1%%/*}
    ulookup "${_u#\~}" || fail "internal: no user for $1"
    [ -n "$U_home" ] || fail "user ${_u#\~} has no home directory"
    hp=$U_home/${1#*/}
    ;;
  *) hp=$root$1 ;;
  esac
}
# Root works only below directories no other user can change: every directory on the way, from / (or the
# local root) down, must be a real directory owned by root (or this user), not writable by group or
# others. Then nobody else can swap a directory or plant a symlink between the checks and the writes.
# chain HOSTDIR...: walks up from each, records the existing directories in $seen and the missing ones
# (parents first) in $missing; checkchain then judges every existing one with a single find.
seen='' missing=''
chain() {
  for _d in "$@"; do
    _new=''
    while [ -n "$_d" ] && [ "$_d" != "$root" ]; do
      case $nl$seen$_new$missing in *"$nl$_d$nl"*) break ;; esac
      if [ -e "$_d" ] || [ -L "$_d" ]; then seen=$seen$_d$nl; else _new=$_d$nl$_new; fi
      _d=${_d%/*}
    done
    missing=$missing$_new
  done
}
checkchain() {
  [ -n "$seen" ] || return 0
  # shellcheck disable=SC2086 # one path a line
  set -- "${root:-/}" $seen
  _f=$(find "$@" -maxdepth 0 \( \! -type d -o -perm /022 -o \( \! -uid 0 \! -uid "$me" \) \) -printf '%p (%M %u) ')
  [ -z "$_f" ] || fail "refusing to write below ${_f}as $(id -un): a directory on the way is a symbolic link, or another user owns or can write it; nothing was changed"
}

# asuser USER OP SUFFIX RECORDS [SELINUX]: runs the user step ($ustep) as the user who owns the files,
# with that user's ids and groups and no privileges, when this script runs as root for another user.
asuser() {
  ulookup "$1" || fail "internal: no user $1"
  _op=$2
  shift 2
  if [ "$U_sw" = 1 ] && [ "$U_uid" != "$me" ]; then
    [ "$me" = 0 ] || fail "files of user $U_uid can only be written by root or that user"
    command -v setpriv >/dev/null 2>&1 || fail "setpriv (util-linux) is missing: it runs the part of the install that writes as the user"
    setpriv --reuid="$U_uid" --regid="$U_gid" --init-groups --no-new-privs --inh-caps=-all \
      /bin/sh -c "$ustep" virt-pki-user "$_op" "$label" "$U_home" "$@"
  else
    /bin/sh -c "$ustep" virt-pki-user "$_op" "$label" "$U_home" "$@"
  fi
}
# The records of one user's part ("u" context): records OWNER <dirs|files>.
records() {
  r=''
  while IFS=' ' read -r _c _a _b _r; do
    if [ "$_c" = u ] && [ "$_b" = "$1" ]; then r="$r$_a $_r$nl"; fi
  done <<EOF
$2
EOF
}
