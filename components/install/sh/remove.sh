# Remove (the command's delete, which gets the same stdin as its create). A file goes only while its
# claim still names this generation: a newer install of the same path keeps it. Directories stay.
cat >/dev/null
resolve_users 0
cl=$root$state/claims
[ -d "$cl" ] || exit 0
chain "$cl"
while IFS=' ' read -r c p o g m n h x; do
  [ "$c" = r ] || continue
  hostpath "$p"
  [ ! -e "${hp%/*}" ] || chain "${hp%/*}"
done <<EOF
$files
EOF
checkchain
set --
ulist='' kept=''
while IFS=' ' read -r c p o g m n h x; do
  [ -n "$c" ] || continue
  y=''
  if [ -f "$cl/$x" ] && IFS=' ' read -r a b <"$cl/$x" && [ "$a" = "$gen" ] && [ "$b" = "$p" ]; then y=1; fi
  if [ "$c" = u ] && [ -n "$y" ]; then
    ulookup "$o"
    if [ -n "$U_home" ] || [ "${p#\~}" = "$p" ]; then
      case $nl$ulist in *"$nl$o$nl"*) ;; *) ulist=$ulist$o$nl ;; esac
    else
      y=''
    fi
  fi
  if [ -z "$y" ]; then
    kept=$kept$p$nl
  elif [ "$c" = r ]; then
    hostpath "$p"
    set -- "$@" "$hp" "$cl/$x"
  fi
done <<EOF
$files
EOF
[ $# = 0 ] || rm -f -- "$@" || fail "cannot remove $*"
while IFS= read -r u; do
  [ -n "$u" ] || continue
  records "$u" "$dirs"
  rd=$r
  r=''
  set --
  while IFS=' ' read -r c p o g m n h x; do
    if [ "$c" = u ] && [ "$o" = "$u" ]; then
      case $nl$kept in *"$nl$p$nl"*) ;; *)
        r="$r$p $g $m $n $h $x$nl"
        set -- "$@" "$cl/$x"
        ;;
      esac
    fi
  done <<EOF
$files
EOF
  asuser "$u" remove .virt-pki.$$ "$rd$r" </dev/null || exit 1
  rm -f -- "$@"
done <<EOF
$ulist
EOF
while IFS=' ' read -r c p o g m n h x; do
  [ -n "$c" ] || continue
  case $nl$kept in *"$nl$p$nl"*) echo "virt-pki-kept $p" ;; *) echo "virt-pki-removed $p" ;; esac
done <<EOF
$files
EOF
