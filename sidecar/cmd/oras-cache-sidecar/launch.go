package main

import (
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/converged-computing/oras-cache/sidecar/launcher"
)

func cmdLaunch(args []string) int {
	fs := flag.NewFlagSet("launch", flag.ContinueOnError)
	share := fs.String("share", "/oras-cache", "the shared volume")
	inputPath := fs.String("input-path", "", "where to place the inputs (default: the working directory)")
	outputPath := fs.String("output-path", "", "file or directory copied into the share after the app exits")
	outputPipe := fs.String("output-pipe", "", "file that receives a copy of the app's stdout")
	debug := fs.Bool("debug", false, "verbose logs")
	if err := fs.Parse(args); err != nil {
		return launcher.ExitLauncherError
	}
	argv := fs.Args()
	// flag stops at "--" and drops it; anything before a "--" that is not a flag is refused so a
	// missing "--" cannot silently eat arguments.
	if i := slices.Index(args, "--"); i < 0 || len(args)-i-1 != len(argv) {
		fmt.Fprintln(os.Stderr, "oras-cache launcher: usage: launch [flags] -- COMMAND [ARGS...]")
		return launcher.ExitLauncherError
	}
	return launcher.Run(launcher.Options{Share: *share, InputPath: *inputPath, OutputPath: *outputPath,
		OutputPipe: *outputPipe, Argv: argv, Debug: *debug})
}
