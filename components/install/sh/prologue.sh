# pulumi-virt-pki host script. This text is the same for every host and every plan: what to do arrives on
# stdin as a plan that is only ever read with `read` and used as quoted arguments, never run.
# Run by bash (root's usual login shell, which runs a remote command), it runs itself again under /bin/sh,
# the POSIX shell it is written and tested for (dash on Debian, faster): the same text, stdin untouched.
# shellcheck disable=SC3013 # -ef: only ever evaluated by bash
if [ -n "${BASH_EXECUTION_STRING-}" ] && [ -z "${VIRT_PKI_SH-}" ] && [ -x /bin/sh ] && ! [ /bin/sh -ef "${BASH-}" ]; then
  VIRT_PKI_SH=1 exec /bin/sh -c "$BASH_EXECUTION_STRING" virt-pki
fi
# No pathname expansion anywhere; unquoted lists split on newlines only (one path a line).
set -euf
umask 077
LC_ALL=C
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL PATH
nl='
'
IFS=$nl
label=virt-pki
root=''
fail() {
  printf '%s\n' "virt-pki: $label: $*" >&2
  exit 1
}
if [ -O / ]; then me=0; else me=$(id -u); fi
# home USER: $uh, the home (local installs: under the root); $ui, $ug: the ids ("" if the user does not exist).
home() {
  _e=$(getent passwd -- "$1" </dev/null) || _e=''
  ui='' ug='' uh=''
  if [ -n "$_e" ]; then
    IFS=: read -r _ _ ui ug _ uh _ <<EOF
$_e
EOF
  fi
  if [ -n "$root" ]; then
    if [ "$1" = root ]; then uh=$root/root; else uh=$root/home/$1; fi
  fi
}
# asuser SWITCH COMMAND...: runs COMMAND as the user of the last `home` call (setpriv: the user's ids and
# groups, no privileges) when SWITCH is 1 and this script is not that user; as itself otherwise. Either
# way it is bounded (timeout 600): a user's part must not hold the install or the delete forever.
asuser() {
  command -v timeout >/dev/null 2>&1 || fail "timeout (coreutils) is missing"
  if [ "$1" = 1 ] && [ "$ui" != "$me" ]; then
    [ -n "$ui" ] || fail "a user of the plan does not exist on this host (home $uh)"
    [ "$me" = 0 ] || fail "the files of user $ui can only be written by root or that user"
    command -v setpriv >/dev/null 2>&1 || fail "setpriv (util-linux) is missing: it runs what is done as the user"
    shift
    setpriv --reuid="$ui" --regid="$ug" --init-groups --no-new-privs --inh-caps=-all timeout 600 "$@"
  else
    shift
    timeout 600 "$@"
  fi
}
# The daemon configuration (libvirtd.conf or virtproxyd.conf, qemu.conf): one block between marker lines,
# FIRST in the file, holds the settings of the plan: libvirt takes the first statement of a key
# (virconf.c virConfGetValue), so the block wins over anything after it. Other statements of the same keys
# are also commented out with a marker prefix, for whoever reads the file, when that is safe: a statement
# alone on its line(s) (a list may span lines), without ";" (libvirt's separator), a triple-quoted string
# or a carriage return; any other is left as it is. Every other byte stays. Removing the block restores
# the statements it had commented out.
# cfx: the awk program (no single quote in it). Input: the file; -v blk=FILE: the block's lines ("": none).
cfx='
function scan(s, i, ch) {
  q = ""
  for (i = 1; i <= length(s); i++) {
    ch = substr(s, i, 1)
    if (q != "") { if (ch == q) q = ""; continue }
    if (ch == "\"" || ch == "\047") q = ch
    else if (ch == "#") break
    else if (ch == ";") odd = 1
    else if (ch == "[") dp++
    else if (ch == "]") dp--
  }
  if (index(s, "\"\"\"") || index(s, "\r")) odd = 1
  return dp > 0
}
function flush(i) {
  for (i = 1; i <= nb; i++) print (odd ? "" : P) buf[i]
  nb = 0
}
BEGIN {
  B = "# BEGIN pulumi-virt-pki: these settings are managed by the Pulumi program; edits here are replaced"
  E = "# END pulumi-virt-pki"
  P = "#pulumi-virt-pki# "
  n = 0
  if (blk != "") while ((getline l < blk) > 0) {
    body[++n] = l
    if (match(l, /^[A-Za-z_][A-Za-z0-9_]*[ \t]*=/)) { k = substr(l, 1, RLENGTH); gsub(/[ \t=]/, "", k); keys[k] = 1 }
  }
  if (n) { print B; for (i = 1; i <= n; i++) print body[i]; print E }
}
inb { if ($0 == E) inb = 0; next }
$0 == B { inb = 1; next }
{
  l = $0
  if (index(l, P) == 1) l = substr(l, length(P) + 1)
  if (cont) { buf[++nb] = l; cont = scan(l); if (!cont) flush(); next }
  if (match(l, /^[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*=/)) {
    k = substr(l, 1, RLENGTH); gsub(/[ \t=]/, "", k)
    if (k in keys) { dp = 0; odd = 0; nb = 0; buf[++nb] = l; cont = scan(substr(l, RLENGTH + 1)); if (!cont) flush(); next }
  }
  print l
}
END {
  if (cont) flush()
  if (inb) exit 3
}
'
ct=''
# confcheck FILE BLOCK: fails where confmerge cannot set FILE to carry BLOCK: a symbolic link, not a regular
# file, a block begun and not ended, no awk (needed unless FILE is missing and BLOCK empty: nothing to do).
# The install asks it of every file before it writes anything (step 0).
confcheck() {
  _f=${1#"$root"}
  [ ! -L "$1" ] || fail "$_f is a symbolic link; refusing to edit it"
  [ -e "$1" ] || [ -n "$2" ] || return 0
  command -v awk >/dev/null 2>&1 || fail "awk is missing on this host: it edits $_f"
  [ -f "$1" ] || { [ ! -e "$1" ] && return 0; } || fail "$_f is not a regular file"
  _r=0
  awk -v blk='' -- "$cfx" "$1" >/dev/null || _r=$?
  [ "$_r" != 3 ] || fail "$_f has the line that begins the pulumi-virt-pki block but not the one that ends it; mend the file by hand, then run again"
}
# confmerge FILE BLOCK: sets FILE (a host path) to carry BLOCK (a file; "" removes the block), replaced
# atomically with its owner and mode when that changes it (the previous text kept as FILE.virt-pki-prev);
# cf=1 then. The directory was checked (checkchain) by the caller.
confmerge() {
  cf=0
  confcheck "$1" "$2"
  if [ -e "$1" ]; then
    _i=$1
    _m=$(stat -c '%a %u %g' -- "$1")
  else
    [ -n "$2" ] || return 0
    _i=/dev/null _m='644 0 0'
  fi
  ct=$1.virt-pki.$$
  _r=0
  awk -v blk="$2" -- "$cfx" "$_i" >"$ct" || _r=$?
  [ "$_r" = 0 ] || fail "cannot write the new ${1#"$root"}"
  if [ "$_i" != /dev/null ] && [ "$(sha256sum <"$ct")" = "$(sha256sum <"$1")" ]; then
    rm -f -- "$ct"
    ct=''
    return 0
  fi
  IFS=' ' read -r _a _u _g <<EOF
$_m
EOF
  { chown -- "$_u:$_g" "$ct" && chmod -- "$_a" "$ct"; } || fail "cannot give the new ${1#"$root"} its owner and mode"
  [ "$_i" = /dev/null ] || cp -p -- "$1" "$1.virt-pki-prev" || fail "cannot keep the previous ${1#"$root"}"
  sync -- "$ct" 2>/dev/null || sync
  mv -f -- "$ct" "$1" || fail "cannot replace ${1#"$root"}"
  ct=''
  cf=1
}
