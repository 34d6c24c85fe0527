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
	"sort"
	"strconv"
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

type marker struct {
	Version int     `json:"version"`
	Scale   float64 `json:"scale"`
	dataset
}

// prepareData creates (or finds) the four datasets.
func prepareData(work string, scale float64, logf func(string, ...any)) ([]*dataset, error) {
	gib := int64(float64(1<<30) * scale)
	smallCount := max(100, int(20000*scale))
	specs := []struct {
		key, title, desc string
		gen              func(dst string) (int, int64, error)
	}{
		{"a", "random.bin", fmt.Sprintf("one %s random file", human(gib)), func(dst string) (int, int64, error) {
			return 1, gib, writeRandom(dst, gib, 1)
		}},
		{"b", "random-dir", fmt.Sprintf("%s directory of 1 000 random files (10 subdirectories)", human(gib)), func(dst string) (int, int64, error) {
			return genTree(dst, 10, 100, gib/1000, "part-%02d", "file-%03d.bin", func(p string, i int, n int64) error { return writeRandom(p, n, uint64(1000+i)) })
		}},
		{"c", "logs", fmt.Sprintf("%s directory of 1 000 log-like text files (compressible)", human(gib)), func(dst string) (int, int64, error) {
			return genTree(dst, 10, 100, gib/1000, "svc-%02d", "app-%03d.log", func(p string, i int, n int64) error { return writeLog(p, n, uint64(5000+i)) })
		}},
		{"d", "small-files", fmt.Sprintf("%d files of 4 KiB (20 subdirectories)", smallCount), func(dst string) (int, int64, error) {
			return genTree(dst, 20, smallCount/20, 4096, "dir-%02d", "f-%04d.dat", func(p string, i int, n int64) error { return writeRandom(p, n, uint64(100000+i)) })
		}},
	}
	var out []*dataset
	for _, s := range specs {
		dir := filepath.Join(work, "data", s.key)
		mpath := filepath.Join(work, "data", "."+s.key+".json")
		var m marker
		if b, err := os.ReadFile(mpath); err == nil && json.Unmarshal(b, &m) == nil && m.Version == dataVersion && m.Scale == scale {
			if _, err := os.Stat(filepath.Join(dir, s.title)); err == nil {
				d := m.dataset
				d.Dir = dir
				out = append(out, &d)
				logf("dataset %s cached: %s (%d files, %s)", s.key, d.Desc, d.Files, human(d.Bytes))
				continue
			}
		}
		t0 := time.Now()
		_ = os.Remove(mpath)
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		files, n, err := s.gen(filepath.Join(dir, s.title))
		if err != nil {
			return nil, fmt.Errorf("generating %s: %w", s.key, err)
		}
		d := dataset{Key: s.key, Title: s.title, Desc: s.desc, Files: files, Bytes: n, Dir: dir}
		if d.Tree, err = treeHash(d.Path()); err != nil {
			return nil, err
		}
		b, _ := json.MarshalIndent(marker{Version: dataVersion, Scale: scale, dataset: d}, "", "  ")
		if err := os.WriteFile(mpath, b, 0o644); err != nil {
			return nil, err
		}
		logf("dataset %s generated in %.1fs: %s (%d files, %s)", s.key, time.Since(t0).Seconds(), d.Desc, files, human(n))
		out = append(out, &d)
	}
	return out, nil
}

// genTree writes dirs×per files of size each (the last file takes no remainder: sizes are equal).
func genTree(root string, dirs, per int, size int64, dirFmt, fileFmt string, write func(p string, i int, n int64) error) (int, int64, error) {
	var files int
	var total int64
	for d := 0; d < dirs; d++ {
		sub := filepath.Join(root, fmt.Sprintf(dirFmt, d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return 0, 0, err
		}
		for f := 0; f < per; f++ {
			if err := write(filepath.Join(sub, fmt.Sprintf(fileFmt, f)), files, size); err != nil {
				return 0, 0, err
			}
			files++
			total += size
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
	levels := []string{"INFO ", "INFO ", "INFO ", "INFO ", "DEBUG", "DEBUG", "WARN ", "ERROR"}
	comps := []string{"http", "db", "cache", "auth", "scheduler", "worker", "storage", "metrics"}
	methods := []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	paths := []string{"/api/v1/items/", "/api/v1/users/", "/api/v2/jobs/", "/healthz", "/api/v1/datasets/", "/static/js/app."}
	msgs := []string{"request completed", "cache miss, loading from backend", "slow query detected",
		"connection pool exhausted, waiting", "retrying after transient error", "job scheduled", "checkpoint written",
		"user session refreshed", "upstream returned an error", "compaction finished"}
	statuses := []int{200, 200, 200, 200, 201, 204, 304, 400, 404, 500, 503}
	ts := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).Add(time.Duration(seed) * time.Hour)
	line := make([]byte, 0, 512)
	var written int64
	for written < n {
		ts = ts.Add(time.Duration(r.IntN(5000)) * time.Microsecond)
		line = ts.AppendFormat(line[:0], "2006-01-02T15:04:05.000000Z07:00")
		line = append(line, ' ')
		line = append(line, levels[r.IntN(len(levels))]...)
		line = append(line, " ["...)
		line = append(line, comps[r.IntN(len(comps))]...)
		line = append(line, '-')
		line = strconv.AppendInt(line, int64(r.IntN(16)), 10)
		line = append(line, "] req="...)
		line = strconv.AppendUint(line, r.Uint64()&0xffffffffff, 16)
		line = append(line, " method="...)
		line = append(line, methods[r.IntN(len(methods))]...)
		line = append(line, " path="...)
		line = append(line, paths[r.IntN(len(paths))]...)
		line = strconv.AppendInt(line, int64(r.IntN(100000)), 10)
		line = append(line, " status="...)
		line = strconv.AppendInt(line, int64(statuses[r.IntN(len(statuses))]), 10)
		line = append(line, " dur="...)
		line = strconv.AppendFloat(line, r.ExpFloat64()*20, 'f', 2, 64)
		line = append(line, "ms bytes="...)
		line = strconv.AppendInt(line, int64(r.IntN(65536)), 10)
		line = append(line, " user=u"...)
		line = strconv.AppendInt(line, int64(r.IntN(5000)), 10)
		line = append(line, ` msg="`...)
		line = append(line, msgs[r.IntN(len(msgs))]...)
		line = append(line, "\"\n"...)
		if rest := n - written; int64(len(line)) > rest {
			line = line[:rest]
			line[len(line)-1] = '\n'
		}
		w.Write(line)
		written += int64(len(line))
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
