// Command gen writes the chart's values.schema.json, the README values table and the "# --"
// comments of values.yaml from schema.Values (`make schema`).
package main

import (
	"flag"
	"log"
	"os"
	"path/filepath"

	"github.com/converged-computing/oras-cache/schema"
)

func main() {
	out := flag.String("o", "charts/oras-cache/values.schema.json", "values.schema.json to write")
	values := flag.String("values", "", "values.yaml with the defaults (default: beside -o)")
	readme := flag.String("readme", "README.md", "README whose values block is rewritten (\"\" to skip)")
	flag.Parse()
	if *values == "" {
		*values = filepath.Join(filepath.Dir(*out), "values.yaml")
	}
	v, err := os.ReadFile(*values)
	if err != nil {
		log.Fatal(err)
	}
	js, table, err := schema.Generate(v)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, js, 0o644); err != nil {
		log.Fatal(err)
	}
	commented, err := schema.CommentValues(v)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*values, commented, 0o644); err != nil {
		log.Fatal(err)
	}
	if *readme != "" {
		r, err := os.ReadFile(*readme)
		if err != nil {
			log.Fatal(err)
		}
		r, err = schema.ReplaceReadmeBlock(r, table)
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(*readme, r, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
