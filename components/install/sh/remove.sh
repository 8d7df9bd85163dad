# Remove: the command's delete, which gets the same stdin as its create. It removes the files whose claim
# (<state>/claims/*: "generation path writer") still names this generation, so a newer install of the same
# path keeps it: root's files by root below checked directories, a user's files by that user. Directories stay.
# checkchain DIR...: root writes only below directories no other user can change. Each directory given
# (the plan lists every ancestor) must be a real directory owned by root (or this user), not writable by
# group or others; then nobody else can swap a directory or plant a link between this check and the writes.
checkchain() {
  _f=$(find "$@" -maxdepth 0 \( \! -type d -o \( -perm /022 \! -perm -1000 \) -o \( \! -uid 0 \! -uid "$me" \) \) -printf '%p (%M %u) ')
  [ -z "$_f" ] || fail "refusing to write below ${_f}as $(id -un): a directory on the way is a symbolic link, or another user owns or can write it; nothing was changed"
}
gen='' owners=0 state='' confs=''
IFS= read -r line || fail "no plan on stdin (this command needs its stdin)"
case $line in "virt-pki-plan 1 "[0-9]*) ;; *) fail "stdin does not start with a plan of format 1; nothing was changed" ;; esac
for line in $(head -c "${line##* }"); do
  k=${line%% *}
  v=${line#"$k"}
  v=${v# }
  case $k in
  label) label=$v ;;
  # A block of the daemon configuration: "c FILE BLOCK" (see the install script).
  c)
    case $v in *[!A-Za-z0-9._@+/:\ -]* | *//* | */./* | */../* | *' '*' '*) fail "the plan on stdin is malformed (record c); nothing was changed" ;; esac
    case $v in "@daemon /"?* | /?*" /"?*) confs=$confs$v$nl ;; *) fail "the plan on stdin is malformed (record c); nothing was changed" ;; esac
    ;;
  gen | opts | root | state)
    case $v in '' | *[!A-Za-z0-9._@+/~:\ -]*) fail "the plan on stdin is malformed (record $k); nothing was changed" ;; esac
    # Paths absolute without . or .. (a relative one would be resolved from the login directory, and the
    # walk up below would not end); the generation is hex (it names files).
    case $k/$v/ in root/*//* | state/*//* | */*/./* | */*/../* | root/[!/]* | state/[!/]*) fail "the plan on stdin is malformed (record $k); nothing was changed" ;; esac
    case $k/$v in gen/*[!0-9a-f]*) fail "the plan on stdin is malformed (record $k); nothing was changed" ;; esac
    case $k in gen) gen=$v ;; opts) owners=${v%% *} ;; root) root=$v ;; state) state=$v ;; esac
    ;;
  esac
done
cat >/dev/null
trap '[ -z "$ct" ] || rm -f -- "$ct"' EXIT
[ -n "$gen" ] && [ -n "$state" ] || fail "the plan on stdin is malformed (no gen or state record); nothing was changed"
cl=$root$state/claims
[ -d "$cl" ] || exit 0
# The claims decide what goes: their directory and every one above it must be root's alone.
set -- "$cl"
d=$cl
while [ -n "$d" ]; do
  d=${d%/*}
  set -- "$@" "${d:-/}"
done
checkchain "$@"
set +f
set -- "$cl"/[0-9a-f]*
set -f
rf='' cf='' uf='' us=''
for c in "$@"; do
  [ -f "$c" ] && IFS=' ' read -r g p w <"$c" && [ "$g" = "$gen" ] || continue
  case "$p/" in /*//* | */./* | */../*) continue ;; /?* | \~?*/?*) ;; *) continue ;; esac
  # Claims of earlier versions have no writer: per-user paths were ~user/... then.
  if [ -z "$w" ]; then case $p in \~root/* | /*) w=- ;; *) w=${p%%/*} w=${w#\~} ;; esac; fi
  if [ "$w" = - ]; then
    rf=$rf$p$nl
    cf=$cf$c$nl
  else
    uf="$uf$w $p $c$nl"
    case $nl$us in *"$nl$w$nl"*) ;; *) us=$us$w$nl ;; esac
  fi
done
# Root's files: every directory from theirs up to / (or the local root) checked, then one rm.
set -- "${root:-/}"
rm=$cf
for p in $rf; do
  case $p in
  \~root/*) home root && hp=$uh/${p#*/} ;;
  *) hp=$root$p ;;
  esac
  rm=$rm$hp$nl
  d=${hp%/*}
  while [ -n "$d" ] && [ "$d" != "$root" ]; do
    [ ! -e "$d" ] || set -- "$@" "$d"
    d=${d%/*}
  done
done
# A block this generation still claims leaves its file first (the statements it had commented out come
# back); the daemon keeps running with what it read (it reads the file again when it restarts).
cs=''
for x in $confs; do
  case $nl$rf in *"$nl${x#* }$nl"*) ;; *) continue ;; esac
  # @daemon: the file of either daemon (the install found which one).
  case ${x%% *} in @daemon) cs=$cs$root/etc/libvirt/libvirtd.conf$nl$root/etc/libvirt/virtproxyd.conf$nl ;; *) cs=$cs$root${x%% *}$nl ;; esac
done
for x in $cs; do
  d=${x%/*}
  while [ -n "$d" ] && [ "$d" != "$root" ]; do
    [ ! -e "$d" ] || set -- "$@" "$d"
    d=${d%/*}
  done
done
checkchain "$@"
for x in $cs; do
  confmerge "$x" ''
  [ "$cf" = 0 ] || printf 'virt-pki-conf %s changed=1\n' "${x#"$root"}"
done
# shellcheck disable=SC2086 # one path a line
[ -z "$rm" ] || rm -f -- $rm
for p in $rf; do
  echo "virt-pki-removed $p"
done
# Each user's files, removed as that user; a symbolic link on the way stops it.
# shellcheck disable=SC2016 # the user's part: its own text, with its own arguments
rmu='set -euf
label=$1 h=$2 root=$3
shift 3
for p; do
  case $p in \~*) r=${p#*/} d=$h ;; *) r=${p#/} d=$root ;; esac
  while :; do
    case $r in
    */*)
      d=$d/${r%%/*} r=${r#*/}
      if [ -L "$d" ]; then
        printf "%s\n" "virt-pki: $label: ${p%%/*}${d#"$h"} is a symbolic link; refusing to follow it (remove it, then run again)" >&2
        exit 1
      fi
      ;;
    *) break ;;
    esac
  done
  rm -f -- "$d/$r"
  echo "virt-pki-removed $p"
done'
for u in $us; do
  home "$u"
  set --
  cs=''
  while IFS=' ' read -r w p c; do
    [ "$w" != "$u" ] || { set -- "$@" "$p" && cs=$cs$c$nl; }
  done <<EOF
$uf
EOF
  if [ -n "$uh" ]; then
    sw=1
    if [ -n "$root" ] && [ "$owners" = 0 ]; then sw=0; fi
    asuser "$sw" /bin/sh -c "$rmu" virt-pki-rm "$label" "$uh" "$root" "$@" || exit 1
    # shellcheck disable=SC2086 # one path a line
    rm -f -- $cs
  fi
done
