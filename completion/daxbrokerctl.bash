# bash completion for daxbrokerctl(1): verbs, options, pool names and
# allocation ids (asked from the running broker).

_daxbrokerctl_column1() { # VERB: first column of a table, without its header
        daxbrokerctl "$@" 2>/dev/null | awk 'NR > 1 && NF { print $1 }'
}

_daxbrokerctl() {
        local cur prev words cword
        _init_completion -n = || return

        local verbs='status pools list allocate release show release-owner return-to-host reclaim-from-host exec open'
        local opts='-h --help --version --json --json=short --json=pretty --no-legend --no-pager --bus-address --user'
        local alloc_opts='--pool --numa-node --align --no-contiguous --label --transient --device-uid --device-gid'
        local exec_opts='--size --owner --pool --numa-node --align --no-contiguous --label --device-uid --device-gid'
        local i verb= nargs=0

        for ((i = 1; i < cword; i++)); do
                [[ ${words[i]} == -- ]] && { [[ $verb == exec || $verb == open ]] && { _command_offset $((i + 1)); return; }; }
                case ${words[i]} in
                --bus-address|--pool|--numa-node|--align|--label|--size|--owner|--device-uid|--device-gid) ((i++)); continue ;;
                -*) continue ;;
                esac
                if [[ -z $verb ]]; then verb=${words[i]}; else ((nargs++)); fi
        done

        case $prev in
        --pool) COMPREPLY=($(compgen -W "$(_daxbrokerctl_column1 pools)" -- "$cur")); return ;;
        --align) COMPREPLY=($(compgen -W '4K 2M 1G' -- "$cur")); return ;;
        --device-uid) COMPREPLY=($(compgen -u -- "$cur")); return ;;
        --device-gid) COMPREPLY=($(compgen -g -- "$cur")); return ;;
        --bus-address|--numa-node|--label|--size|--owner) return ;;
        esac

        if [[ $cur == -* ]]; then
                case $verb in
                allocate) COMPREPLY=($(compgen -W "$opts $alloc_opts" -- "$cur")) ;;
                exec) COMPREPLY=($(compgen -W "$opts $exec_opts --" -- "$cur")) ;;
                open) COMPREPLY=($(compgen -W "$opts --" -- "$cur")) ;;
                *) COMPREPLY=($(compgen -W "$opts" -- "$cur")) ;;
                esac
                return
        fi

        case $verb in
        '') COMPREPLY=($(compgen -W "$verbs" -- "$cur")) ;;
        release|open|show)
                ((nargs == 0)) && COMPREPLY=($(compgen -W "$(_daxbrokerctl_column1 list)" -- "$cur")) ;;
        return-to-host|reclaim-from-host)
                ((nargs == 0)) && COMPREPLY=($(compgen -W "$(_daxbrokerctl_column1 pools)" -- "$cur")) ;;
        esac
}
complete -F _daxbrokerctl daxbrokerctl
