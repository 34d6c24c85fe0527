package schema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/invopop/jsonschema"
	"sigs.k8s.io/yaml"
)

// The descriptions are the doc comments of values.go, embedded so the generator and the
// staleness test do not depend on the working directory.
//
//go:embed values.go
var valuesSource string

// README markers of the generated values table.
const (
	ReadmeStart = "<!-- values:start -->"
	ReadmeEnd   = "<!-- values:end -->"
)

// Generate returns values.schema.json and the README values table for the chart whose
// values.yaml is given; the defaults in both come from values.yaml.
func Generate(valuesYAML []byte) (schemaJSON []byte, table string, err error) {
	s, err := reflectValues()
	if err != nil {
		return nil, "", err
	}
	s.ID = ""
	s.Version = "http://json-schema.org/draft-07/schema#"
	s.Title = "oras-cache chart values"

	var defaults map[string]any
	if err := yaml.Unmarshal(valuesYAML, &defaults); err != nil {
		return nil, "", fmt.Errorf("values.yaml: %w", err)
	}
	var rows []string
	if err := walk(s, defaults, "", &rows); err != nil {
		return nil, "", err
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, "", err
	}
	table = "| Key | Type | Default | Description |\n|---|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
	return append(out, '\n'), table, nil
}

// reflectValues is the JSON schema of Values, described by the comments of values.go.
func reflectValues() (*jsonschema.Schema, error) {
	comments, err := goComments()
	if err != nil {
		return nil, err
	}
	r := &jsonschema.Reflector{
		DoNotReference:             true,
		ExpandedStruct:             true,
		RequiredFromJSONSchemaTags: true,
		CommentMap:                 comments,
	}
	return r.Reflect(&Values{}), nil
}

// valuesKeyRE is a block-mapping key line of values.yaml: indentation, key.
var valuesKeyRE = regexp.MustCompile(`^( *)([A-Za-z][A-Za-z0-9_]*):(\s|$)`)

// CommentValues returns values.yaml with a "# -- <description>" line above every key that
// values.go describes, replacing the "# --" lines there before; every other line is kept. So the
// comments `helm show values` prints are the descriptions of the schema and the README table.
func CommentValues(valuesYAML []byte) ([]byte, error) {
	s, err := reflectValues()
	if err != nil {
		return nil, err
	}
	desc := map[string]string{}
	var collect func(s *jsonschema.Schema, prefix string)
	collect = func(s *jsonschema.Schema, prefix string) {
		if s.Properties == nil {
			return
		}
		for p := s.Properties.Oldest(); p != nil; p = p.Next() {
			full := strings.TrimPrefix(prefix+"."+p.Key, ".")
			if p.Value.Description != "" {
				desc[full] = p.Value.Description
			}
			collect(p.Value, full)
		}
	}
	collect(s, "")

	type level struct {
		indent int
		key    string
	}
	var stack []level
	var out []string
	for _, line := range strings.SplitAfter(string(valuesYAML), "\n") {
		if strings.HasPrefix(strings.TrimLeft(line, " "), "# --") {
			continue // written below, from values.go
		}
		if m := valuesKeyRE.FindStringSubmatch(line); m != nil {
			indent := len(m[1])
			for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
				stack = stack[:len(stack)-1]
			}
			stack = append(stack, level{indent, m[2]})
			var path []string
			for _, l := range stack {
				path = append(path, l.key)
			}
			if d, ok := desc[strings.Join(path, ".")]; ok {
				out = append(out, m[1]+"# -- "+d+"\n")
			}
		}
		out = append(out, line)
	}
	return []byte(strings.Join(out, "")), nil
}

// walk sets the default of every leaf from values.yaml and collects the README rows.
func walk(s *jsonschema.Schema, defaults map[string]any, prefix string, rows *[]string) error {
	if s.Properties == nil {
		return nil
	}
	for p := s.Properties.Oldest(); p != nil; p = p.Next() {
		key, prop := p.Key, p.Value
		full := strings.TrimPrefix(prefix+"."+key, ".")
		def, ok := defaults[key]
		if !ok {
			return fmt.Errorf("values.yaml has no default for %s", full)
		}
		if prop.Properties != nil && prop.Properties.Len() > 0 {
			m, isMap := def.(map[string]any)
			if !isMap {
				return fmt.Errorf("values.yaml: %s must be a map", full)
			}
			if err := walk(prop, m, full, rows); err != nil {
				return err
			}
			continue
		}
		prop.Default = def
		*rows = append(*rows, row(full, prop, def))
	}
	// values.yaml keys that the schema does not know fail validation anyway; report them here too.
	var extra []string
	for k := range defaults {
		if _, ok := s.Properties.Get(k); !ok {
			extra = append(extra, strings.TrimPrefix(prefix+"."+k, "."))
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("values.yaml keys missing from schema/values.go: %s", strings.Join(extra, ", "))
	}
	return nil
}

func row(key string, s *jsonschema.Schema, def any) string {
	typ := s.Type
	if typ == "array" && s.Items != nil && s.Items.Type != "" {
		typ = s.Items.Type + "[]"
	}
	d, _ := json.Marshal(def)
	desc := s.Description
	var enum []any
	if len(s.Enum) > 0 {
		enum = s.Enum
	} else if s.Items != nil && len(s.Items.Enum) > 0 {
		enum = s.Items.Enum
	}
	if len(enum) > 0 {
		var vs []string
		for _, e := range enum {
			vs = append(vs, fmt.Sprintf("`%v`", e))
		}
		desc += " One of " + strings.Join(vs, ", ") + "."
	}
	switch {
	case s.Minimum != "" && s.Maximum != "":
		desc += fmt.Sprintf(" Range %s–%s.", s.Minimum, s.Maximum)
	case s.Minimum != "":
		desc += fmt.Sprintf(" Minimum %s.", s.Minimum)
	case s.Maximum != "":
		desc += fmt.Sprintf(" Maximum %s.", s.Maximum)
	}
	esc := strings.NewReplacer("|", `\|`, "\n", " ", "<", "&lt;", ">", "&gt;")
	return fmt.Sprintf("| `%s` | %s | `%s` | %s |", key, typ, esc.Replace(string(d)), esc.Replace(desc))
}

// goComments maps "<pkg>.<Type>" and "<pkg>.<Type>.<Field>" to their doc comments, one line each.
func goComments() (map[string]string, error) {
	pkg := reflect.TypeOf(Values{}).PkgPath()
	f, err := parser.ParseFile(token.NewFileSet(), "values.go", valuesSource, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	oneLine := func(g *ast.CommentGroup) string { return strings.Join(strings.Fields(g.Text()), " ") }
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE {
			continue
		}
		for _, sp := range gd.Specs {
			ts := sp.(*ast.TypeSpec)
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				continue
			}
			for _, fl := range st.Fields.List {
				if fl.Doc == nil {
					continue
				}
				for _, n := range fl.Names {
					m[pkg+"."+ts.Name.Name+"."+n.Name] = oneLine(fl.Doc)
				}
			}
		}
	}
	return m, nil
}

// readmeChart precedes the values table: what a release creates and what uninstall leaves.
const readmeChart = `### What a release creates

With release ` + "`R`" + ` in namespace ` + "`NS`" + ` (names start with the fullname, ` + "`R-oras-cache`" + `, or ` + "`R`" + ` when it
already contains ` + "`oras-cache`" + `; every name fits 63 characters):

| Object | Name | Why |
|---|---|---|
| Deployment, Service, ConfigMap (and PVC with persistence) | ` + "`<fullname>-registry`" + ` | the cache: CNCF distribution behind the capacity guard, deletes enabled, htpasswd auth |
| ConfigMap | ` + "`<fullname>-registry-guard`" + ` | the capacity guard's bound (re-read by the running registry, so an upgrade keeps the cache) |
| Secret | ` + "`<fullname>-registry-http`" + ` | the registry HTTP secret (kept across upgrades) |
| Secret | ` + "`<fullname>-auth`" + ` | ` + "`username`" + `, ` + "`password`" + `, ` + "`htpasswd`" + ` (random password, kept across upgrades); not with ` + "`auth.existingSecret`" + ` or auth off |
| Deployment, Service, ConfigMap, ServiceAccount, Role, RoleBinding, PodDisruptionBudget | ` + "`<fullname>-webhook`" + ` | the admission webhook (Role: ` + "`get`" + ` on Secrets of NS only) |
| Secret (TLS mode ` + "`helm`" + `; in mode ` + "`certManager`" + ` an Issuer and a Certificate ` + "`<fullname>-webhook`" + ` make it) | ` + "`<fullname>-webhook-tls`" + ` | the webhook serving certificate and its CA |
| MutatingWebhookConfiguration (cluster-scoped) | ` + "`NS-<fullname>`" + ` | pods CREATE in NS whose ` + "`oras-cache`" + ` annotation names R |
| NetworkPolicy ×2 | ` + "`<fullname>-registry`" + `, ` + "`<fullname>-webhook`" + ` | registry only from pods of NS (+ ` + "`networkPolicy.extraFrom`" + `); webhook port open to the API server |
| Pod (` + "`helm test`" + ` hook) | ` + "`<fullname>-test`" + ` | pushes and pulls an artifact through the cache with the chart's credentials |

` + "`helm uninstall R -n NS`" + ` deletes all of it, the MutatingWebhookConfiguration included. It keeps: the
claim when ` + "`registry.persistence.keepOnUninstall`" + ` is true (annotation ` + "`helm.sh/resource-policy: keep`" + `),
an ` + "`existingClaim`" + `, an ` + "`existingSecret`" + ` and your own TLS Secret (never the chart's), and, in mode
` + "`certManager`" + `, the Secret cert-manager wrote (delete it by hand, or run cert-manager with
` + "`--enable-certificate-owner-ref`" + `). Without persistence the cache is an emptyDir and goes with its pod.

### Every value

`

// ReplaceReadmeBlock puts table between the README markers.
func ReplaceReadmeBlock(readme []byte, table string) ([]byte, error) {
	i := bytes.Index(readme, []byte(ReadmeStart))
	j := bytes.Index(readme, []byte(ReadmeEnd))
	if i < 0 || j < i {
		return nil, fmt.Errorf("README has no %s … %s block", ReadmeStart, ReadmeEnd)
	}
	var b bytes.Buffer
	b.Write(readme[:i+len(ReadmeStart)])
	b.WriteString("\n<!-- generated by `make schema` from schema/values.go and charts/oras-cache/values.yaml; do not edit -->\n")
	b.WriteString(readmeChart)
	b.WriteString(table)
	b.Write(readme[j:])
	return b.Bytes(), nil
}
