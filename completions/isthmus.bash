# bash completion for isthmus, isthmus-target, isthmus-initiator and isthmus-perf.
# Options are taken from each program's --help, so they follow the installed version.

_isthmus_help_options()
{
	"$@" --help 2>/dev/null | grep -oE -- '--[a-z][a-z0-9-]*[a-z0-9]' | sort -u
}

_isthmus_file_option()
{
	case "$1" in
	--config | --in | --out | --state-dir | --devices-dir | --nbd-dir | --ibft | --socket | --mgmt-socket)
		return 0 ;;
	esac
	return 1
}

_isthmus_complete()
{
	local cur prev words cword
	_init_completion || return
	local prog=${words[0]}

	if _isthmus_file_option "$prev"; then
		_filedir
		return
	fi
	case "$prev" in
	--log-level)
		COMPREPLY=($(compgen -W "error warn info debug" -- "$cur"))
		return ;;
	--type)
		COMPREPLY=($(compgen -W "data informational boot" -- "$cur"))
		return ;;
	--header-digest | --data-digest)
		[[ ${prog##*/} == isthmus ]] && COMPREPLY=($(compgen -W "none crc32c prefer" -- "$cur"))
		return ;;
	esac

	case ${prog##*/} in
	isthmus)
		local family="" i
		for ((i = 1; i < cword; i++)); do
			[[ ${words[i]} != -* ]] && { family=${words[i]}; break; }
		done
		if [[ -z "$family" && "$cur" != -* ]]; then
			COMPREPLY=($(compgen -W "discover inquiry readcapacity reportluns read write target login logout session persistent chap" -- "$cur"))
			return
		fi
		case "$family" in
		target)
			if [[ "$cur" == -* ]]; then
				COMPREPLY=($(compgen -W "$(_isthmus_help_options "$prog" target)" -- "$cur"))
			elif ((cword == i + 1)); then
				COMPREPLY=($(compgen -W "session list stats add-target remove-target add-lun remove-lun resize-lun allow disallow set-chap add-portal remove-portal save-config reload" -- "$cur"))
			fi ;;
		login | logout | session | persistent | chap)
			if [[ "$cur" == -* ]]; then
				COMPREPLY=($(compgen -W "$(_isthmus_help_options "$prog" login)" -- "$cur"))
			elif ((cword == i + 1)); then
				case "$family" in
				session) COMPREPLY=($(compgen -W "list show logout register unregister add-connection remove-connection inquiry readcapacity reportluns" -- "$cur")) ;;
				persistent) COMPREPLY=($(compgen -W "list add remove" -- "$cur")) ;;
				chap) COMPREPLY=($(compgen -W "set-secret" -- "$cur")) ;;
				esac
			fi ;;
		*)
			[[ "$cur" == -* ]] && COMPREPLY=($(compgen -W "$(_isthmus_help_options "$prog") --daemon" -- "$cur")) ;;
		esac ;;
	isthmus-initiator)
		if ((cword == 1)) && [[ "$cur" != -* ]]; then
			COMPREPLY=($(compgen -W "ctl" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$(_isthmus_help_options "$prog")" -- "$cur"))
		fi ;;
	*)
		COMPREPLY=($(compgen -W "$(_isthmus_help_options "$prog")" -- "$cur")) ;;
	esac
}
complete -F _isthmus_complete isthmus isthmus-target isthmus-initiator isthmus-perf
