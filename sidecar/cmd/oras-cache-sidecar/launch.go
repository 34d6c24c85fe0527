package main

import (
	"fmt"
	"os"

	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/launcher"
	"github.com/converged-computing/oras-cache/sidecar/transfer"
)

func cmdLaunch(args []string) int {
	a, err := contract.ParseLaunch(args)
	if err != nil {
		usageError(err)
		return launcher.ExitLauncherError
	}
	size, entries, err := transfer.UnpackLimits(nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "oras-cache launcher: %v\n", err)
		return launcher.ExitLauncherError
	}
	return launcher.Run(launcher.Options{Share: string(a.Share), InputPath: a.InputPath, OutputPath: a.OutputPath,
		OutputPipe: a.OutputPipe, Argv: a.Argv, Debug: a.Debug, Limits: launcher.Limits{Bytes: size, Entries: entries}})
}
