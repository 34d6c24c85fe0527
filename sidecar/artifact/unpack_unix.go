package artifact

import "syscall"

const noFollow = syscall.O_NOFOLLOW
