# Install. Reads and checks the plan, then runs the file engine ($fx) for each part: root, which reads its
# files straight from stdin, then each user, as that user, from a stream of that user's files alone. Every
# part is put (received and checked, nothing replaced) before any part commits (renames).
bad() { fail "the plan on stdin is malformed ($*); nothing was changed"; }
# The plan: "virt-pki-plan 1 BYTES", then BYTES of records (one head -c reads them, none past them).
IFS= read -r line || fail "no plan on stdin (this command needs its stdin)"
case $line in "virt-pki-plan 1 "[0-9]*) ;; *) fail "stdin does not start with a plan of format 1; nothing was changed" ;; esac
n=${line##* }
case $n in *[!0-9]*) bad "plan size $n" ;; esac
plan=$(head -c "$n")
case $plan in *"${nl}end") ;; *) fail "the plan on stdin ended early (connection lost?); nothing was changed" ;; esac
gen='' owners=0 sel=0 state='' qemu='' reload='' parts='' recs=''
for line in $plan; do
  k=${line%% *}
  v=${line#"$k"}
  v=${v# }
  case $k in
  label) label=$v && continue ;;
  reload) reload=$reload$v$nl && continue ;;
  end) break ;;
  esac
  # Fields: letters, digits and ._@+/~:- only; paths absolute (or ~user/...) without . or ..; modes 0NNN.
  case $v in '' | *[!A-Za-z0-9._@+/~:\ -]*) bad "record $k" ;; esac
  IFS=' '
  # shellcheck disable=SC2086 # the fields of one record
  set -- $v
  IFS=$nl
  case $k/$# in
  d/5 | f/8)
    case $1 in /?* | \~?*/?*) ;; *) bad "path $1" ;; esac
    case "$1/" in *//* | */./* | */../*) bad "path $1" ;; esac
    case $4 in 0[0-7][0-7][0-7]) ;; *) bad "mode $4" ;; esac
    case $5 in '' | *[!0-9]*) bad "number $5" ;; esac
    case ${6-}${7-}${8-} in *[!0-9a-f]*) bad "hash ${6-} ${7-} ${8-}" ;; esac
    ;;
  part/3)
    case $1 in [a-z_]*) ;; *) bad "part $1" ;; esac
    case $1 in *[!a-z0-9_-]*) bad "part $1" ;; esac
    case $2 in 0 | 1) ;; *) bad "part $1 $2" ;; esac
    case $3 in '' | *[!0-9]*) bad "number $3" ;; esac
    parts="$parts$1 $2 $3$nl"
    ;;
  gen/1)
    case $1 in *[!0-9a-f]*) bad "record gen" ;; esac
    gen=$1
    ;;
  opts/2) owners=$1 sel=$2 ;;
  root/1 | state/1)
    case "$1/" in /?*) ;; *) bad "path $1" ;; esac
    case "$1/" in *//* | */./* | */../*) bad "path $1" ;; esac
    if [ "$k" = root ]; then root=$1; else state=$1; fi
    ;;
  qemu/1) qemu=$1 ;;
  *) bad "record $k" ;;
  esac
  recs=$recs$line$nl
done
if [ -z "$gen" ] || [ -z "$state" ]; then bad "no gen or state record"; fi
case $parts in "root "*) ;; *) bad "the first part is not root" ;; esac
for c in sha256sum stat find mv chmod; do
  command -v "$c" >/dev/null 2>&1 || fail "$c is missing on this host"
done
qg=''
if [ "$owners" = 1 ] && [ -n "$qemu" ]; then
  if [ "$qemu" = - ]; then
    qg=$(getent group qemu libvirt-qemu </dev/null) || [ -n "$qg" ] ||
      fail "neither group qemu (Fedora/RHEL) nor libvirt-qemu (Debian/Ubuntu) exists: install QEMU first, or set qemuGroup"
  else
    qg=$(getent group "$qemu" </dev/null) || fail "group $qemu (qemuGroup) does not exist"
  fi
  qg=${qg%%:*}
fi
cl=$root$state/claims
sfx=.virt-pki.$$
st=$cl/$sfx
pend=''
# partof WRITER: sets r to that part's records (its part line first) and sw to its switch.
partof() {
  sw=0 r='' on=0
  for l in $recs; do
    case $l in "part $1 "*) on=1 sw=${l#part "$1" } sw=${sw%% *} ;; "part "*) on=0 ;; esac
    [ $on = 0 ] || r=$r$l$nl
  done
}
# engine WRITER OP [SELINUX]: the file engine for a part, with that part's records alone, stdin on fd 5.
# Root's part runs in a subshell of this script; a user's part runs as that user (bounded in time).
engine() {
  h=''
  partof "$1"
  if [ "$1" != root ]; then
    home "$1"
    h=$uh
  else
    case $recs in *" ~root/"*) home root && h=$uh ;; esac
  fi
  set -- "$2" "$label" "$h" "$root" "$sfx" "$1" "$me" "$owners" "$qg" "$r" "${3:-0}" "$sw"
  if [ "$6" = root ]; then
    # The same engine text, in a subshell: $fx is this script's own constant, never data.
    # shellcheck disable=SC2294
    (eval "$fx") <&5
  else
    asuser "$sw" /bin/sh -c "$fx" virt-pki-files "$@" <&5
  fi
}
cleanup() {
  trap - EXIT
  for w in $pend; do engine "$w" abort 5</dev/null || true; done
  [ ! -d "$st" ] || rm -rf -- "$st"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# 1. A staging tree (local install) gets its root and the homes it needs; a host must have them.
if [ -n "$root" ]; then
  [ -d "$root" ] || (umask 022 && mkdir -p -- "$root")
  for x in $parts; do
    if [ "${x%% *}" = root ]; then
      case $recs in *" ~root/"*) home root && mkdir -p -- "$uh" ;; esac
      continue
    fi
    home "${x%% *}"
    [ -d "$uh" ] || { (umask 022 && mkdir -p -- "$uh") && { [ "$owners" = 0 ] || chown -- "$ui:$ug" "$uh"; }; }
  done
fi

# 2. Put root's part (its files come first on stdin), then receive each user's files into a stream
#    of their own and put their parts.
changed=0
out=$(engine root put 5<&0) || exit 1
pend=root$nl
case $out in *changed*) changed=1 ;; esac
case $parts in *"$nl"?*) mkdir -- "$st" 2>/dev/null || { rm -rf -- "$st" && mkdir -- "$st"; } ;; esac
for x in $parts; do
  w=${x%% *}
  [ "$w" != root ] || continue
  head -c "${x##* }" >"$st/$w" || fail "cannot receive the file data"
done
if IFS= read -r line || [ -n "$line" ]; then fail "stdin holds more than the plan announced; nothing was replaced"; fi
for x in $parts; do
  w=${x%% *}
  [ "$w" != root ] || continue
  out=$(engine "$w" put 5<"$st/$w") || exit 1
  pend=$pend$w$nl
  case $out in *changed*) changed=1 ;; esac
done

# 3. Commit every part: SELinux labels over SSH (root's part also cert_t outside /etc/pki). A reload owed
#    by a run that failed after a commit stays owed (a marker per generation) until one succeeds.
rp=$cl/.reload-$gen
[ "$changed" = 0 ] || [ -z "$reload" ] || : >"$rp"
for x in $parts; do
  w=${x%% *} s=0
  if [ "$sel" = 1 ] && [ -z "$root" ]; then
    if [ "$w" = root ]; then s=2; else s=1; fi
  fi
  if [ "$w" = root ]; then
    engine root commit "$s" 5</dev/null || exit 1
    continue
  fi
  # A user part reports only its own files (those of its records) and home, once each.
  out=$(engine "$w" commit "$s" 5</dev/null) || exit 1
  partof "$w"
  seen=''
  for l in $out; do
    case $l in
    "virt-pki-home $w "*) ;;
    "virt-pki-file "*)
      p=${l#virt-pki-file } p=${p%% *}
      case $nl$seen in *"$nl$p$nl"*) continue ;; esac
      case $nl$r in *"${nl}f $p "*) ;; *) continue ;; esac
      seen=$seen$p$nl
      ;;
    *) continue ;;
    esac
    printf '%s\n' "$l"
  done
done
pend=''
[ ! -d "$st" ] || rm -rf -- "$st"

# 4. Claims: <state>/claims/<sha256 of the path> holds "generation path writer"; a delete of this
#    generation removes only the files it still claims.
w=root
for l in $recs; do
  case $l in
  "part "*) w=${l#part } w=${w%% *} ;;
  "f "*)
    IFS=' '
    # shellcheck disable=SC2086 # the fields of one record
    set -- $l
    IFS=$nl
    y=$w
    [ "$w" != root ] || y=-
    printf '%s %s %s\n' "$gen" "$2" "$y" >"$cl/$8" || fail "cannot record the claim in $cl"
    ;;
  esac
done

# 5. Reload, only when some content changed.
printf 'virt-pki-install %s changed=%s\n' "$gen" "$changed"
if [ -f "$rp" ]; then
  # shellcheck disable=SC2086 # one word a line
  set -- $reload
  "$@" </dev/null >&2 || fail "the reload command failed; the new files are in place (the next run reloads again)"
  rm -f -- "$rp"
  echo virt-pki-reloaded
fi
