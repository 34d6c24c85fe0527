package guard

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the registry die with the guard (a guard killed with SIGKILL cannot stop
// it), so a restarted container never finds an orphan holding the port.
func dieWithParent(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
