// Command noshell is the test app of the shell-less image localhost/oras-cache-test/noshell:1:
// a single static binary, the image's ENTRYPOINT, no shell and no CMD. It writes a file so a
// test can check that it ran, and can fail, sleep or use memory on request. Every setting is a
// flag or, when the pod spec has no args at all, an environment variable:
//
//	--out PATH      NOSHELL_OUT     file to write (parents created)      default noshell.txt (cwd)
//	--text TEXT     NOSHELL_TEXT    its content (a newline is added)     default "hello from noshell"
//	--cat PATH      NOSHELL_CAT     print these files or directory trees first (repeatable; env: comma list)
//	--sleep DUR     NOSHELL_SLEEP   wait before exiting (Go duration)
//	--alloc-mb N    NOSHELL_ALLOC_MB  allocate and touch N MiB (to trigger an OOM kill)
//	--exit N        NOSHELL_EXIT    exit code                            default 0
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func env(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

func main() {
	var cats list
	out := flag.String("out", env("NOSHELL_OUT", "noshell.txt"), "file to write")
	text := flag.String("text", env("NOSHELL_TEXT", "hello from noshell"), "content of the file")
	sleep := flag.Duration("sleep", 0, "wait before exiting")
	allocMB := flag.Int("alloc-mb", 0, "allocate and touch this many MiB")
	code := flag.Int("exit", 0, "exit code")
	flag.Var(&cats, "cat", "print this file or directory tree (repeatable)")
	if v := os.Getenv("NOSHELL_CAT"); v != "" {
		cats = strings.Split(v, ",")
	}
	if v := os.Getenv("NOSHELL_SLEEP"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fail("NOSHELL_SLEEP: %v", err)
		}
		*sleep = d
	}
	*allocMB = envInt("NOSHELL_ALLOC_MB", *allocMB)
	*code = envInt("NOSHELL_EXIT", *code)
	flag.Parse()

	for _, c := range cats {
		err := filepath.WalkDir(c, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Printf("--- %s (%d bytes)\n%s\n", p, len(b), b)
			return nil
		})
		if err != nil {
			fail("cat %s: %v", c, err)
		}
	}
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			fail("%v", err)
		}
		if err := os.WriteFile(*out, []byte(*text+"\n"), 0o644); err != nil {
			fail("%v", err)
		}
		fmt.Printf("noshell: wrote %s (%d bytes)\n", *out, len(*text)+1)
	}
	if *allocMB > 0 {
		fmt.Printf("noshell: allocating %d MiB\n", *allocMB)
		var keep [][]byte
		for i := 0; i < *allocMB; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			keep = append(keep, b)
		}
		fmt.Printf("noshell: holding %d MiB\n", len(keep))
	}
	if *sleep > 0 {
		time.Sleep(*sleep)
	}
	if *code != 0 {
		fmt.Printf("noshell: exiting with %d\n", *code)
	}
	os.Exit(*code)
}

func envInt(k string, def int) int {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fail("%s: %v", k, err)
	}
	return n
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "noshell: "+format+"\n", a...)
	os.Exit(1)
}
