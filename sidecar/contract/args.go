package contract

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The roles, the first argument of the sidecar binary.
const (
	RoleInit     = "init"
	RoleLaunch   = "launch"
	RolePush     = "push"
	RoleSelftest = "selftest"
)

// ErrFlags wraps a flag syntax error, which the flag package has already printed to stderr
// together with the role's flags.
var ErrFlags = errors.New("invalid flags")

// Each role's arguments: Args renders them as the webhook writes them into a container (role
// first; zero fields are left out, so the flag default applies); Parse… reads them back (without
// the role), as the sidecar does.

// InitArgs are the arguments of the init container: install the launcher, pull the inputs.
type InitArgs struct {
	Share        Share    // "" = MountPath
	Inputs       []string // input i goes to Share.Input(i)
	KeepArchives bool     // --unpack=false: keep directory layers as <title>.tar.gz
	Debug        bool
}

// LaunchArgs are the arguments of the launcher, the app container's new command.
type LaunchArgs struct {
	Share      Share
	InputPath  string // where to place the inputs ("" = the working directory)
	OutputPath string // file or directory copied into the share after the app exits
	OutputPipe string // file that receives a copy of the app's stdout
	Debug      bool
	Argv       []string // the app's command and arguments, after "--"
}

// DefaultTerminationLog is where push writes its termination message unless told otherwise.
const DefaultTerminationLog = "/dev/termination-log"

// PushArgs are the arguments of the push sidecar.
type PushArgs struct {
	Share         Share
	Output        string // the reference to push to (a tag)
	PushOnFailure bool
	// TerminationLog: nil = DefaultTerminationLog; "" = stdout only.
	TerminationLog *string
	StartTimeout   time.Duration // 0 = sidecar/marker's default
	Poll           time.Duration // 0 = sidecar/marker's default
	Debug          bool
}

// DefaultSelftestReference is where selftest pushes unless told otherwise.
const DefaultSelftestReference = "oras-cache/selftest:latest"

// SelftestArgs are the arguments of the chart's test hook.
type SelftestArgs struct {
	Reference string // "" = DefaultSelftestReference
	Debug     bool
}

func shareOr(s Share) string {
	if s == "" {
		return MountPath
	}
	return string(s)
}

// Args renders a as the init container's args.
func (a InitArgs) Args() []string {
	out := []string{RoleInit, "--share", shareOr(a.Share)}
	for _, in := range a.Inputs {
		out = append(out, "--input", in)
	}
	if a.KeepArchives {
		out = append(out, "--unpack=false")
	}
	if a.Debug {
		out = append(out, "--debug")
	}
	return out
}

// Args renders a as the launcher's arguments (the webhook puts LauncherPath before them).
func (a LaunchArgs) Args() []string {
	out := []string{RoleLaunch, "--share", shareOr(a.Share)}
	for _, f := range [][2]string{{"--input-path", a.InputPath}, {"--output-path", a.OutputPath}, {"--output-pipe", a.OutputPipe}} {
		if f[1] != "" {
			out = append(out, f[0], f[1])
		}
	}
	if a.Debug {
		out = append(out, "--debug")
	}
	return append(append(out, "--"), a.Argv...)
}

// Args renders a as the push container's args.
func (a PushArgs) Args() []string {
	out := []string{RolePush, "--share", shareOr(a.Share), "--output", a.Output}
	if a.PushOnFailure {
		out = append(out, "--push-on-failure")
	}
	if a.TerminationLog != nil {
		out = append(out, "--termination-log", *a.TerminationLog)
	}
	if a.StartTimeout != 0 {
		out = append(out, "--start-timeout", a.StartTimeout.String())
	}
	if a.Poll != 0 {
		out = append(out, "--poll", a.Poll.String())
	}
	if a.Debug {
		out = append(out, "--debug")
	}
	return out
}

// Args renders a as selftest's args.
func (a SelftestArgs) Args() []string {
	out := []string{RoleSelftest}
	if a.Reference != "" {
		out = append(out, "--reference", a.Reference)
	}
	if a.Debug {
		out = append(out, "--debug")
	}
	return out
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrFlags, err)
	}
	return nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type shareFlag struct{ s *Share }

func (f shareFlag) String() string {
	if f.s == nil {
		return ""
	}
	return string(*f.s)
}
func (f shareFlag) Set(v string) error { *f.s = Share(v); return nil }

func shareVar(fs *flag.FlagSet, s *Share) {
	*s = MountPath
	fs.Var(shareFlag{s}, "share", "the shared volume")
}

// ParseInit reads the init container's arguments.
func ParseInit(args []string) (InitArgs, error) {
	var a InitArgs
	fs := flag.NewFlagSet(RoleInit, flag.ContinueOnError)
	shareVar(fs, &a.Share)
	fs.Var((*multiFlag)(&a.Inputs), "input", "input artifact reference (repeatable); input i goes to <share>/inputs/<i>/")
	unpack := fs.Bool("unpack", true, "unpack directory layers (false: keep them as <title>.tar.gz)")
	fs.BoolVar(&a.Debug, "debug", false, "verbose logs")
	if err := parse(fs, args); err != nil {
		return a, err
	}
	if fs.NArg() > 0 {
		return a, fmt.Errorf("init: unexpected arguments %q", fs.Args())
	}
	a.KeepArchives = !*unpack
	return a, nil
}

// ParseLaunch reads the launcher's arguments; the app's argv follows a mandatory "--".
func ParseLaunch(args []string) (LaunchArgs, error) {
	var a LaunchArgs
	fs := flag.NewFlagSet(RoleLaunch, flag.ContinueOnError)
	shareVar(fs, &a.Share)
	fs.StringVar(&a.InputPath, "input-path", "", "where to place the inputs (default: the working directory)")
	fs.StringVar(&a.OutputPath, "output-path", "", "file or directory copied into the share after the app exits")
	fs.StringVar(&a.OutputPipe, "output-pipe", "", "file that receives a copy of the app's stdout")
	fs.BoolVar(&a.Debug, "debug", false, "verbose logs")
	if err := parse(fs, args); err != nil {
		return a, err
	}
	a.Argv = fs.Args()
	// flag stops at "--" and drops it; anything before a "--" that is not a flag is refused so a
	// missing "--" cannot silently eat arguments.
	if i := slices.Index(args, "--"); i < 0 || len(args)-i-1 != len(a.Argv) {
		return a, errors.New("oras-cache launcher: usage: launch [flags] -- COMMAND [ARGS...]")
	}
	return a, nil
}

// ParsePush reads the push container's arguments.
func ParsePush(args []string) (PushArgs, error) {
	var a PushArgs
	fs := flag.NewFlagSet(RolePush, flag.ContinueOnError)
	shareVar(fs, &a.Share)
	fs.StringVar(&a.Output, "output", "", "artifact reference to push to (a tag; relative to $"+EnvRegistry+" when it has no host)")
	fs.BoolVar(&a.PushOnFailure, "push-on-failure", false, "push the output even when the app failed")
	termLog := fs.String("termination-log", DefaultTerminationLog, "where to write the JSON termination message (\"\" = stdout only)")
	fs.DurationVar(&a.StartTimeout, "start-timeout", 0, "give up when no launcher runs in the app container for this long (0: 2m)")
	fs.DurationVar(&a.Poll, "poll", 0, "marker polling interval (0: 100ms)")
	fs.BoolVar(&a.Debug, "debug", false, "verbose logs")
	if err := parse(fs, args); err != nil {
		return a, err
	}
	if a.Output == "" || fs.NArg() > 0 {
		return a, errors.New("push: --output REF is required and there are no positional arguments")
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "termination-log" {
			a.TerminationLog = termLog
		}
	})
	return a, nil
}

// ParseSelftest reads selftest's arguments.
func ParseSelftest(args []string) (SelftestArgs, error) {
	var a SelftestArgs
	fs := flag.NewFlagSet(RoleSelftest, flag.ContinueOnError)
	fs.StringVar(&a.Reference, "reference", DefaultSelftestReference, "where to push the test artifact")
	fs.BoolVar(&a.Debug, "debug", false, "verbose logs")
	if err := parse(fs, args); err != nil {
		return a, err
	}
	return a, nil
}

// TerminationLogPath is where push writes its termination message ("" = stdout only).
func (a PushArgs) TerminationLogPath() string {
	if a.TerminationLog == nil {
		return DefaultTerminationLog
	}
	return *a.TerminationLog
}
