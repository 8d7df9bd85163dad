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
