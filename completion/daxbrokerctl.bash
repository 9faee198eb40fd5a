# bash completion for daxbrokerctl(1): verbs, options, the columns of -o,
# pool names and allocation ids (asked from the running broker).

_daxbrokerctl_names() { # VERB COLUMN: one column of the verb's table, no header
        daxbrokerctl --no-legend --raw -o "$2" "$1" 2>/dev/null
}

_daxbrokerctl() {
        local cur prev words cword
        _init_completion -n = || return

        local verbs='status pools list allocate release show release-owner return-to-host reclaim-from-host exec open'
        local opts='-h --help --version -o --output --raw --json --json=short --json=pretty --no-legend --no-pager --bus-address --user'
        local alloc_opts='--pool --numa-node --align --no-contiguous --label --transient --device-uid --device-gid --min-read-bandwidth --min-write-bandwidth --max-read-latency --max-write-latency --tier --cache-isolation --colors'
        local exec_opts='--size --owner --pool --numa-node --align --no-contiguous --label --device-uid --device-gid --min-read-bandwidth --min-write-bandwidth --max-read-latency --max-write-latency --tier --cache-isolation --colors'
        local pool_columns='NAME PATH REGION NODE START SIZE ALIGN BOUNDARY FREE ALLOCATED HOST DIRTY FOREIGN LARGEST-FREE'
        local list_columns='ID PATH OWNER UID LABEL POOL SIZE ALIGN DEVICE TRANSIENT CREATED RANGES'
        local i verb= nargs=0

        for ((i = 1; i < cword; i++)); do
                [[ ${words[i]} == -- ]] && { [[ $verb == exec || $verb == open ]] && { _command_offset $((i + 1)); return; }; }
                case ${words[i]} in
                --bus-address|--pool|--numa-node|--align|--label|--size|--owner|--device-uid|--device-gid|--min-read-bandwidth|--min-write-bandwidth|--max-read-latency|--max-write-latency|--tier|--colors|-o|--output) ((i++)); continue ;;
                -*) continue ;;
                esac
                if [[ -z $verb ]]; then verb=${words[i]}; else ((nargs++)); fi
        done
        # The verb may also come after -o: look ahead for it.
        if [[ -z $verb ]]; then
                for ((i = cword + 1; i < ${#words[@]}; i++)); do
                        [[ ${words[i]} == -* ]] || { verb=${words[i]}; break; }
                done
        fi

        case $prev in
        -o|--output)
                # A comma-separated list: complete its last name, keep the rest.
                local columns list=${cur#+} plus=
                [[ $cur == +* ]] && plus=+
                local head=$plus${list%"${list##*,}"} last=${list##*,}
                case $verb in
                list) columns=$list_columns ;;
                status|pools) columns=$pool_columns ;;
                *) columns="$pool_columns $list_columns" ;;
                esac
                COMPREPLY=($(compgen -P "$head" -W "$columns" -- "${last^^}"))
                compopt -o nospace
                return ;;
        --pool) COMPREPLY=($(compgen -W "$(_daxbrokerctl_names pools NAME)" -- "$cur")); return ;;
        --align) COMPREPLY=($(compgen -W '4K 2M 1G' -- "$cur")); return ;;
        --device-uid) COMPREPLY=($(compgen -u -- "$cur")); return ;;
        --device-gid) COMPREPLY=($(compgen -g -- "$cur")); return ;;
        --bus-address|--numa-node|--label|--size|--owner|--min-read-bandwidth|--min-write-bandwidth|--max-read-latency|--max-write-latency|--tier|--colors) return ;;
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
                ((nargs == 0)) && COMPREPLY=($(compgen -W "$(_daxbrokerctl_names list ID)" -- "$cur")) ;;
        return-to-host|reclaim-from-host)
                ((nargs == 0)) && COMPREPLY=($(compgen -W "$(_daxbrokerctl_names pools NAME)" -- "$cur")) ;;
        esac
}
complete -F _daxbrokerctl daxbrokerctl
