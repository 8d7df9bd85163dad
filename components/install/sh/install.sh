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
gen='' owners=0 sel=0 state='' qemu='' reload='' restart='' parts='' recs=''
dk='' listen=0 auto=0 confs='' watch='' probe=''
for line in $plan; do
  k=${line%% *}
  v=${line#"$k"}
  v=${v# }
  case $k in
  label) label=$v && continue ;;
  reload) reload=$reload$v$nl && continue ;;
  restart) restart=$restart$v$nl && continue ;;
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
  # "repair TOKEN": changes when a probe found the host drifted, so that the install runs again.
  repair/1) ;;
  # The daemon configuration: "c FILE BLOCK" (FILE absolute, or @daemon: the daemon's own file);
  # "daemon KIND LISTEN", "rmode auto", "w CLASS PATH" (a file whose change asks for that reload),
  # "probe ADDRESS PORT CERT" (check that the daemon serves CERT there).
  c/2 | w/2 | probe/3)
    for x in "$@"; do
      case "$x/" in *//* | */./* | */../*) bad "path $x" ;; esac
    done
    case $k in
    c)
      case $1/$2 in @daemon//?* | /?*//?*) confs="$confs$1 $2$nl" ;; *) bad "record c" ;; esac
      ;;
    w)
      case $1/$2 in tls//?* | vnc//?*) watch="$watch$1 $2$nl" ;; *) bad "record w" ;; esac
      ;;
    *)
      case $2/$3 in [1-9]*//?*) ;; *) bad "record probe" ;; esac
      case $2 in *[!0-9]*) bad "port $2" ;; esac
      probe=$v
      ;;
    esac
    ;;
  daemon/2)
    case $1/$2 in libvirtd/[01] | virtproxyd/[01] | auto/[01]) dk=$1 listen=$2 ;; *) bad "record daemon" ;; esac
    ;;
  rmode/1)
    [ "$1" = auto ] || bad "record rmode"
    auto=1
    ;;
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
  [ -z "$ct" ] || rm -f -- "$ct"
}
# whichd: $dk, the libvirt daemon that serves TLS, when the plan says "auto": virtproxyd where its units
# are enabled or it runs (modular daemons), else libvirtd where it runs or is installed.
whichd() {
  [ "$dk" = auto ] || return 0
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    for x in virtproxyd libvirtd; do
      for u in "$x.socket" "$x.service"; do
        if systemctl -q is-enabled -- "$u" 2>/dev/null; then dk=$x && return 0; fi
      done
    done
  fi
  for x in virtproxyd libvirtd; do
    if pidof -- "$x" >/dev/null 2>&1; then dk=$x && return 0; fi
  done
  for x in libvirtd virtproxyd; do
    if command -v "$x" >/dev/null 2>&1; then dk=$x && return 0; fi
  done
  fail "neither libvirtd nor virtproxyd is installed: install libvirt first, or declare the daemon (daemonConfig.daemon)"
}
# isup DAEMON: whether it runs (its admin socket answers).
isup() {
  if command -v virt-admin >/dev/null 2>&1; then
    virt-admin -q -c "$1:///system" srv-list </dev/null >/dev/null 2>&1
  else
    pidof -- "$1" >/dev/null 2>&1
  fi
}
# restartd DAEMON: the plan's restart command (for the TLS daemon), else the host's service manager's restart.
restartd() {
  if [ -n "$restart" ] && [ "$1" = "$dk" ]; then
    # shellcheck disable=SC2086 # one word a line
    set -- $restart
    "$@" </dev/null >&2 || fail "the restart command failed; the new files and settings are in place (the next run restarts again)"
  elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl try-restart -- "$1.service" </dev/null >&2 || fail "systemctl try-restart $1.service failed"
  elif command -v rc-service >/dev/null 2>&1; then
    rc-service -- "$1" restart </dev/null >&2 || fail "rc-service $1 restart failed"
  elif [ -x "/etc/init.d/$1" ]; then
    "/etc/init.d/$1" restart </dev/null >&2 || fail "/etc/init.d/$1 restart failed"
  else
    fail "$1 must restart to read its new settings, and this host has no service manager this script knows (systemd, OpenRC, /etc/init.d/$1): give restartCommand"
  fi
  printf 'virt-pki-reload %s restart\n' "$1"
}
# owe: adds what $owed lists (one class a line) to the marker of what "auto" still owes, synced.
owe() {
  [ -n "$owed" ] || return 0
  printf '%s' "$owed" >>"$rp" || fail "cannot record the reload owed in $cl"
  sync -- "$rp" 2>/dev/null || sync
}
# autoreload: what the owed marker lists (see step 6), each daemon once: a restart where settings changed
# (it re-reads the TLS files too), else `server-update-tls` where only TLS files changed.
autoreload() {
  o=$nl$(cat -- "$rp")$nl
  vn=''
  case $o in *"${nl}vnc$nl"*) vn=1 ;; esac
  # The QEMU driver's daemon: virtqemud beside virtproxyd, or where it runs; else libvirtd.
  qd=libvirtd
  if [ "$dk" = virtproxyd ] || isup virtqemud; then qd=virtqemud; fi
  rs=''
  case $o in *"${nl}restart$nl"*) rs=$dk$nl ;; esac
  case $o in *"${nl}qrestart$nl"*) [ "$qd" = "${rs%"$nl"}" ] || rs=$rs$qd$nl ;; esac
  for x in $rs; do
    if isup "$x"; then restartd "$x"; else printf 'virt-pki-reload %s not-running\n' "$x"; fi
  done
  case $nl$rs in *"$nl$dk$nl"*) o=${nl}restarted$nl ;; esac
  case $o in
  *"${nl}tls$nl"*)
    if ! isup "$dk"; then
      printf 'virt-pki-reload %s not-running\n' "$dk"
    elif virt-admin -q -c "$dk:///system" server-update-tls -- "$dk" </dev/null >&2; then
      printf 'virt-pki-reload %s update-tls\n' "$dk"
    else
      restartd "$dk"
    fi
    ;;
  esac
  [ -z "$vn" ] || vncreload
}
# vncreload: each running guest of the QEMU driver with a VNC display re-reads its TLS files
# (`virsh domdisplay-reload`, libvirt 10.2, else QMP display-reload, QEMU 6.0); one that cannot is listed,
# and so is each guest with SPICE over TLS or a TLS character device (migrate or restart those).
vncreload() {
  command -v virsh >/dev/null 2>&1 || return 0
  doms=$(virsh -q -c qemu:///system list --name </dev/null 2>/dev/null) || return 0
  for x in $doms; do
    [ -n "$x" ] || continue
    xml=$(virsh -q -c qemu:///system dumpxml -- "$x" </dev/null) || continue
    # SPICE and TLS character devices cannot re-read their credentials in a running QEMU: listed.
    case $xml in *"<graphics type='spice'"*"tlsPort="*) printf 'virt-pki-reload guest %s cannot-reload spice-tls\n' "$x" ;; esac
    case $xml in *"tls='yes'"*) printf 'virt-pki-reload guest %s cannot-reload chardev-tls\n' "$x" ;; esac
    case $xml in *"<graphics type='vnc'"*) ;; *) continue ;; esac
    if virsh -q -c qemu:///system domdisplay-reload --type vnc -- "$x" </dev/null >/dev/null 2>&1 ||
      virsh -q -c qemu:///system qemu-monitor-command -- "$x" '{"execute":"display-reload","arguments":{"type":"vnc","tls-certs":true}}' </dev/null >/dev/null 2>&1; then
      printf 'virt-pki-reload guest %s display-reload\n' "$x"
    else
      printf 'virt-pki-reload guest %s vnc-display-reload-failed\n' "$x"
    fi
  done
}
# served: the SHA-256 fingerprint of the certificate the daemon serves at the probe's address and port,
# polled (bounded) until it is the installed one; anything else fails the run, and the reload stays owed.
# The component compares the reported one with what it sent, too.
served() {
  IFS=' '
  # shellcheck disable=SC2086 # the fields of the probe record
  set -- $probe
  IFS=$nl
  case $1 in *:*) a="[$1]:$2" ;; *) a=$1:$2 ;; esac
  w=$(openssl x509 -noout -fingerprint -sha256 -in "$root$3" </dev/null) || fail "cannot read $3"
  g='' i=0
  while [ "$i" -lt 15 ]; do
    g=$(timeout 10 openssl s_client -connect "$a" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null) || g=''
    [ "$g" != "$w" ] || break
    i=$((i + 1))
    sleep 1
  done
  [ "$g" = "$w" ] || fail "libvirt at $a serves ${g:+the certificate }${g:-no certificate (nothing answered with TLS)}, not the one installed (${w#*=}): does the daemon run with TLS on that address and port (listenTls, verifyServed)? The files are in place; the next run reloads again"
  printf 'virt-pki-served %s %s\n' "$a" "${g#*=}"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# 0. Before anything is written: the daemon, the files confmerge edits, openssl for the proof.
[ -z "$dk$confs" ] || whichd
for x in $confs; do
  f=${x%% *}
  case $f in @daemon) f=/etc/libvirt/$dk.conf ;; esac
  confcheck "$root$f" 1
done
[ -z "$probe" ] || command -v openssl >/dev/null 2>&1 || fail "openssl is missing on this host: it checks which certificate the daemon serves (or turn verifyServed off)"

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
case $out in *changed*) changed=1 chg=$out$nl ;; *) chg='' ;; esac
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
  case $out in *changed*) changed=1 chg=$chg$out$nl ;; esac
done

# 3. Commit every part: SELinux labels over SSH (root's part also cert_t outside /etc/pki). A reload owed
#    by a run that failed after a commit stays owed until one succeeds: a marker per generation for the
#    reload command; for "auto", one marker of the state directory listing what is owed (see step 6),
#    written before anything is committed, so that no later failure can lose it.
rp=$cl/.reload-$gen
[ "$changed" = 0 ] || [ -z "$reload" ] || [ "$auto" = 1 ] || : >"$rp"
if [ "$auto" = 1 ]; then
  rp=$cl/.reload-auto
  owed=''
  for x in $watch; do
    case $chg in *"changed ${x#* }$nl"*) owed=$owed${x%% *}$nl ;; esac
  done
  owe
fi
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

# 5. The daemon configuration: each block (a file of this plan, in place now) set in its file. The daemon
#    is the plan's, or detected: virtproxyd where its units are enabled or it runs, else libvirtd.
for x in $confs; do
  f=${x%% *} b=$root${x#* }
  case $f in @daemon) f=$root/etc/libvirt/$dk.conf q=restart ;; *) f=$root$f q=qrestart ;; esac
  confmerge "$f" "$b"
  owed=''
  [ "$cf" = 0 ] || owed=$q$nl
  [ "$auto" = 0 ] || owe
  printf 'virt-pki-conf %s changed=%s\n' "${f#"$root"}" "$cf"
done
if [ "$listen" = 1 ] && [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 &&
  systemctl cat -- "$dk-tls.socket" >/dev/null 2>&1 && ! systemctl -q is-enabled -- "$dk-tls.socket" 2>/dev/null; then
  owed=restart$nl
  [ "$auto" = 0 ] || owe
  systemctl enable --now -- "$dk-tls.socket" </dev/null >&2 || fail "cannot enable $dk-tls.socket"
fi

# 6. Reload, only when some content changed. With the plan's reload command, that command; with "auto",
#    what each change needs, once the daemon of the host runs: a changed daemon configuration (or a new
#    TLS listener) a restart of the daemon, a changed qemu.conf one of the daemon that runs QEMU, changed
#    TLS files of the daemon `virt-admin server-update-tls` (the daemon re-reads them, no connection
#    drops; a restart where the command is missing), changed VNC files `display-reload` in each running
#    guest with VNC. What is owed stays owed until a run completes it and the proof.
printf 'virt-pki-install %s changed=%s\n' "$gen" "$changed"
if [ "$auto" = 1 ]; then
  [ ! -f "$rp" ] || autoreload
  [ -z "$probe" ] || served
  rm -f -- "$rp"
elif [ -f "$rp" ]; then
  # shellcheck disable=SC2086 # one word a line
  set -- $reload
  "$@" </dev/null >&2 || fail "the reload command failed; the new files are in place (the next run reloads again)"
  rm -f -- "$rp"
  echo virt-pki-reloaded
fi
