package main

import (
	"github.com/converged-computing/oras-cache/sidecar/contract"
	"github.com/converged-computing/oras-cache/sidecar/launcher"
)

func cmdLaunch(args []string) int {
	a, err := contract.ParseLaunch(args)
	if err != nil {
		usageError(err)
		return launcher.ExitLauncherError
	}
	return launcher.Run(launcher.Options{Share: string(a.Share), InputPath: a.InputPath, OutputPath: a.OutputPath,
		OutputPipe: a.OutputPipe, Argv: a.Argv, Debug: a.Debug})
}
