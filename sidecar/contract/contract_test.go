package contract

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

// Every role's arguments survive Args → Parse unchanged, so whatever the webhook writes is what
// the sidecar reads.
func TestArgsRoundTrip(t *testing.T) {
	roundTrip := func(t *testing.T, args []string, parse func([]string) (any, error), want any) {
		t.Helper()
		got, err := parse(args[1:])
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q parsed as %+v, want %+v", args, got, want)
		}
	}
	pInit := func(a []string) (any, error) { return ParseInit(a) }
	pLaunch := func(a []string) (any, error) { return ParseLaunch(a) }
	pPush := func(a []string) (any, error) { return ParsePush(a) }
	pSelftest := func(a []string) (any, error) { return ParseSelftest(a) }

	for _, a := range []InitArgs{
		{Share: MountPath},
		{Share: "/s", Inputs: []string{"a:1", "host:5000/b@sha256:00", "$(X)/c:$(T)"}, KeepArchives: true, Debug: true},
	} {
		roundTrip(t, a.Args(), pInit, a)
	}
	for _, a := range []LaunchArgs{
		{Share: MountPath, Argv: []string{"app"}},
		{Share: "/s", InputPath: "/in", OutputPath: "out", OutputPipe: "/p", Debug: true, Argv: []string{"sh", "-c", "--", "--debug"}},
		{Share: MountPath, Argv: []string{}},
	} {
		roundTrip(t, a.Args(), pLaunch, a)
	}
	for _, a := range []PushArgs{
		{Share: MountPath, Output: "r:t"},
		{Share: "/s", Output: "h:1/r:t", PushOnFailure: true, TerminationLog: ptr(""), StartTimeout: time.Second, Poll: time.Millisecond, Debug: true},
		{Share: MountPath, Output: "r:t", TerminationLog: ptr("/tmp/t")},
	} {
		roundTrip(t, a.Args(), pPush, a)
	}
	for _, a := range []SelftestArgs{{Reference: DefaultSelftestReference}, {Reference: "x/y:z", Debug: true}} {
		roundTrip(t, a.Args(), pSelftest, a)
	}
}

// Zero fields are left out of the command line and read back as the defaults.
func TestArgsDefaults(t *testing.T) {
	if got, want := (InitArgs{}).Args(), []string{RoleInit, "--share", MountPath}; !reflect.DeepEqual(got, want) {
		t.Fatalf("%q, want %q", got, want)
	}
	p, err := ParsePush([]string{"--output", "r:t"})
	if err != nil || p.Share != MountPath || p.TerminationLog != nil || p.TerminationLogPath() != DefaultTerminationLog {
		t.Fatalf("%+v %v", p, err)
	}
	if p, _ := ParsePush([]string{"--output", "r:t", "--termination-log", ""}); p.TerminationLogPath() != "" {
		t.Fatalf("an explicit empty --termination-log must mean stdout only, got %q", p.TerminationLogPath())
	}
	if s, _ := ParseSelftest(nil); s.Reference != DefaultSelftestReference {
		t.Fatalf("selftest reference %q", s.Reference)
	}
}

func TestParseRejects(t *testing.T) {
	for name, err := range map[string]error{
		"init positional":       second(ParseInit([]string{"--input", "a:1", "stray"})),
		"init unknown flag":     second(ParseInit([]string{"--nope"})),
		"launch without --":     second(ParseLaunch([]string{"--share", "/s", "app"})),
		"launch flag after arg": second(ParseLaunch([]string{"app", "--", "x"})),
		"push without output":   second(ParsePush([]string{"--share", "/s"})),
		"push positional":       second(ParsePush([]string{"--output", "r:t", "x"})),
		"push bad duration":     second(ParsePush([]string{"--output", "r:t", "--poll", "soon"})),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := second(ParseInit([]string{"--nope"})); !errors.Is(err, ErrFlags) {
		t.Errorf("a flag syntax error must wrap ErrFlags (its message is printed by the flag package): %v", err)
	}
	if err := second(ParseInit([]string{"stray"})); errors.Is(err, ErrFlags) {
		t.Errorf("our own usage errors are not flag syntax errors: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestShareLayout(t *testing.T) {
	s := Share("/v")
	for got, want := range map[string]string{
		s.Launcher():                 "/v/bin/oras-cache-sidecar",
		s.Input(3):                   "/v/inputs/3",
		s.Output("out.txt"):          "/v/outputs/out.txt",
		s.Dir(RunDir):                "/v/run",
		LauncherPath:                 "/oras-cache/bin/oras-cache-sidecar",
		SidecarBinary:                "/usr/local/bin/oras-cache-sidecar",
		Share(MountPath).Dir(BinDir): "/oras-cache/bin",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
		}
	}
}

func TestSplitHost(t *testing.T) {
	for _, c := range []struct{ ref, host, rest string }{
		{"repo:tag", "", "repo:tag"},
		{"library/busybox", "", "library/busybox"},
		{"localhost/x:1", "localhost", "x:1"},
		{"localhost", "", "localhost"},
		{"ghcr.io/o/r@sha256:ab", "ghcr.io", "o/r@sha256:ab"},
		{"reg:5000/r", "reg:5000", "r"},
		{"[::1]:5000/r", "[::1]:5000", "r"},
		{"/r", "", "/r"},
		{"r.x", "", "r.x"},
	} {
		if h, r := SplitHost(c.ref); h != c.host || r != c.rest {
			t.Errorf("SplitHost(%q) = %q, %q; want %q, %q", c.ref, h, r, c.host, c.rest)
		}
	}
}
