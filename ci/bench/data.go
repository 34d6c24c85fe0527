package main

// Datasets: generated once under <work>/data, deterministic (seeded), cached with a marker file
// that records the generator version, the scale and the tree checksum.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

const dataVersion = 1

// dataset is one input of the data-path benchmark.
type dataset struct {
	Key   string `json:"key"`   // a, b, c, d
	Title string `json:"title"` // the file or directory pushed (layer title)
	Desc  string `json:"desc"`
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"`
	Tree  string `json:"tree"` // treeHash of the source
	Dir   string `json:"-"`    // <work>/data/<key>: the parent of Title (cwd of the pushes)
}

func (d *dataset) Path() string { return filepath.Join(d.Dir, d.Title) }

// What describes dataset key (its description without the parenthesis) for the names of targets.
func (d *dataResult) What(key string) string {
	i := slices.IndexFunc(d.Datasets, func(x *dataset) bool { return x.Key == key })
	if i < 0 {
		return "(dataset not run)"
	}
	w, _, _ := strings.Cut(d.Datasets[i].Desc, " (")
	return w
}

// prepareData creates (or finds, by their marker files) the four datasets.
func prepareData(work string, scale float64) ([]*dataset, error) {
	gib := int64(float64(1<<30) * scale)
	small := max(100, int(20000*scale))
	random := func(base int) func(string, int, int64) error {
		return func(p string, i int, n int64) error { return writeRandom(p, n, uint64(base+i)) }
	}
	specs := []struct {
		dataset
		gen func(dst string) (int, int64, error)
	}{
		{dataset{Key: "a", Title: "random.bin", Desc: fmt.Sprintf("one %s random file", human(gib))}, func(dst string) (int, int64, error) {
			return 1, gib, writeRandom(dst, gib, 1)
		}},
		{dataset{Key: "b", Title: "random-dir", Desc: fmt.Sprintf("%s directory of 1 000 random files (10 subdirectories)", human(gib))}, func(dst string) (int, int64, error) {
			return genTree(dst, 10, 100, gib/1000, "part-%02d", "file-%03d.bin", random(1000))
		}},
		{dataset{Key: "c", Title: "logs", Desc: fmt.Sprintf("%s directory of 1 000 log-like text files (compressible)", human(gib))}, func(dst string) (int, int64, error) {
			return genTree(dst, 10, 100, gib/1000, "svc-%02d", "app-%03d.log", func(p string, i int, n int64) error { return writeLog(p, n, uint64(5000+i)) })
		}},
		{dataset{Key: "d", Title: "small-files", Desc: fmt.Sprintf("%d files of 4 KiB (20 subdirectories)", small)}, func(dst string) (int, int64, error) {
			return genTree(dst, 20, small/20, 4096, "dir-%02d", "f-%04d.dat", random(100000))
		}},
	}
	var out []*dataset
	for _, s := range specs {
		d := s.dataset
		d.Dir = filepath.Join(work, "data", d.Key)
		mpath := filepath.Join(work, "data", "."+d.Key+".json")
		var m struct {
			Version int     `json:"version"`
			Scale   float64 `json:"scale"`
			dataset
		}
		if b, err := os.ReadFile(mpath); err == nil && json.Unmarshal(b, &m) == nil && m.Version == dataVersion && m.Scale == scale {
			if _, err := os.Stat(d.Path()); err == nil {
				m.Dir = d.Dir
				out = append(out, &m.dataset)
				logf("dataset %s cached: %s (%d files, %s)", d.Key, m.Desc, m.Files, human(m.Bytes))
				continue
			}
		}
		t0 := time.Now()
		_ = os.Remove(mpath)
		err := os.RemoveAll(d.Dir)
		if err == nil {
			err = os.MkdirAll(d.Dir, 0o755)
		}
		if err == nil {
			if d.Files, d.Bytes, err = s.gen(d.Path()); err != nil {
				err = fmt.Errorf("generating %s: %w", d.Key, err)
			}
		}
		if err == nil {
			d.Tree, err = treeHash(d.Path())
		}
		if err == nil {
			m.Version, m.Scale, m.dataset = dataVersion, scale, d
			b, _ := json.MarshalIndent(m, "", "  ")
			err = os.WriteFile(mpath, b, 0o644)
		}
		if err != nil {
			return nil, err
		}
		logf("dataset %s generated in %.1fs: %s (%d files, %s)", d.Key, time.Since(t0).Seconds(), d.Desc, d.Files, human(d.Bytes))
		out = append(out, &d)
	}
	return out, nil
}

// genTree writes dirs×per files of size each (the last file takes no remainder: sizes are equal).
func genTree(root string, dirs, per int, size int64, dirFmt, fileFmt string, write func(p string, i int, n int64) error) (files int, total int64, err error) {
	for d := range dirs {
		sub := filepath.Join(root, fmt.Sprintf(dirFmt, d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return 0, 0, err
		}
		for f := range per {
			if err := write(filepath.Join(sub, fmt.Sprintf(fileFmt, f)), files, size); err != nil {
				return 0, 0, err
			}
			files, total = files+1, total+size
		}
	}
	return files, total, nil
}

func writeRandom(p string, n int64, seed uint64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), 'b', 'e', 'n', 'c', 'h'})
	if _, err := io.CopyBuffer(f, io.LimitReader(r, n), make([]byte, 1<<20)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeLog writes n bytes of application-log-like lines: timestamps, levels, components, request
// ids, paths, status codes, durations — compressible about 4–6× by gzip, like real logs.
func writeLog(p string, n int64, seed uint64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(seed, 0x10c5))
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	statuses := []int{200, 200, 200, 200, 201, 204, 304, 400, 404, 500, 503}
	ts := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).Add(time.Duration(seed) * time.Hour)
	var line []byte
	for written := int64(0); written < n; written += int64(len(line)) {
		ts = ts.Add(time.Duration(r.IntN(5000)) * time.Microsecond)
		// the arguments are evaluated left to right: the same random draws in the same order
		line = fmt.Appendf(line[:0], "%s %s [%s-%d] req=%x method=%s path=%s%d status=%d dur=%.2fms bytes=%d user=u%d msg=\"%s\"\n",
			ts.Format("2006-01-02T15:04:05.000000Z07:00"), pick("INFO ", "INFO ", "INFO ", "INFO ", "DEBUG", "DEBUG", "WARN ", "ERROR"),
			pick("http", "db", "cache", "auth", "scheduler", "worker", "storage", "metrics"), r.IntN(16), r.Uint64()&0xffffffffff,
			pick("GET", "GET", "GET", "POST", "PUT", "DELETE"),
			pick("/api/v1/items/", "/api/v1/users/", "/api/v2/jobs/", "/healthz", "/api/v1/datasets/", "/static/js/app."), r.IntN(100000),
			statuses[r.IntN(len(statuses))], r.ExpFloat64()*20, r.IntN(65536), r.IntN(5000),
			pick("request completed", "cache miss, loading from backend", "slow query detected",
				"connection pool exhausted, waiting", "retrying after transient error", "job scheduled", "checkpoint written",
				"user session refreshed", "upstream returned an error", "compaction finished"))
		if rest := n - written; int64(len(line)) > rest {
			line = line[:rest]
			line[len(line)-1] = '\n'
		}
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// treeHash is a checksum of a file or a directory tree: sorted relative paths, entry kinds and
// the sha256 of every file's bytes (modes and times are not compared).
func treeHash(root string) (string, error) {
	type ent struct{ rel, kind, sum string }
	var ents []ent
	buf := make([]byte, 1<<20)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.IsDir():
			ents = append(ents, ent{rel, "d", ""})
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.CopyBuffer(h, f, buf)
			f.Close()
			if err != nil {
				return err
			}
			ents = append(ents, ent{rel, "f", hex.EncodeToString(h.Sum(nil))})
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			ents = append(ents, ent{rel, "l", t})
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].rel < ents[j].rel })
	h := sha256.New()
	for _, e := range ents {
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", e.rel, e.kind, e.sum)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1000<<20:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
