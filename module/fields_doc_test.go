package module

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the generated block of docs/configuration.md")

// configDoc is the file whose "Fields and defaults" block is generated.
const configDoc = "../docs/configuration.md"

// fieldTypes are the configuration's types, in the order the block lists
// them, with the files that declare them.
var fieldTypes = []struct{ name, heading, file string }{
	{"Handler", "`codemie_webhooks` (http.handlers.codemie_webhooks)", "handler.go"},
	{"Config", "`redis` (also `key_prefix` below)", "../internal/redisconn/redisconn.go"},
	{"RedisConfig", "`redis`: the key prefix", "config.go"},
	{"RateLimit", "`rate_limit`", "config.go"},
	{"Upstream", "`upstream`", "config.go"},
	{"OAuth2", "`oauth2` (in `upstream` and `sync_from_codemie`)", "config.go"},
	{"Retry", "`retry`", "config.go"},
	{"DeadLetters", "`dead_letters`", "config.go"},
	{"DeliveryLog", "`delivery_log`", "config.go"},
	{"SyncFromCodeMie", "`sync_from_codemie`", "sync.go"},
	{"Console", "`codemie_webhooks_console` (http.handlers.codemie_webhooks_console)", "console.go"},
}

// TestFieldsDoc holds docs/configuration.md's "Fields and defaults" block
// to the field docs, the one place that states each option's default and
// unit: `make docs` rewrites it.
func TestFieldsDoc(t *testing.T) {
	doc, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- fields:begin", "<!-- fields:end -->"
	text := string(doc)
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no fields block", configDoc)
	}
	i += strings.Index(text[i:], "-->") + len("-->\n")
	want := fieldsBlock(t)
	if text[i:j] == want {
		return
	}
	if !*updateDocs {
		t.Fatalf("%s: the fields block is out of date with the field docs; run `make docs`", configDoc)
	}
	if err := os.WriteFile(configDoc, []byte(text[:i]+want+text[j:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fieldsBlock renders every configuration type's JSON fields and their docs.
func fieldsBlock(t *testing.T) string {
	var b strings.Builder
	for _, ft := range fieldTypes {
		st := structType(t, ft.file, ft.name)
		b.WriteString("\n### " + ft.heading + "\n\n| JSON field | meaning, unit and default |\n|---|---|\n")
		for _, f := range st.Fields.List {
			name := jsonName(f)
			if name == "" {
				continue
			}
			doc := strings.Join(strings.Fields(f.Doc.Text()), " ")
			if doc == "" && len(f.Names) > 0 {
				doc = "As above."
			}
			for _, n := range names(f, name) {
				b.WriteString("| `" + n + "` | " + strings.ReplaceAll(doc, "|", `\|`) + " |\n")
			}
		}
	}
	return b.String() + "\n"
}

// names are the JSON names of a field; an embedded struct has none here
// (its type is listed on its own).
func names(f *ast.Field, name string) []string {
	if len(f.Names) == 0 {
		return nil
	}
	return []string{name}
}

func jsonName(f *ast.Field) string {
	if f.Tag == nil || len(f.Names) == 0 || !f.Names[0].IsExported() {
		return ""
	}
	tag := reflect.StructTag(strings.Trim(f.Tag.Value, "`")).Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	return name
}

func structType(t *testing.T, file, name string) *ast.StructType {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.FromSlash(file), nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var found *ast.StructType
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == name {
			found, _ = ts.Type.(*ast.StructType)
		}
		return found == nil
	})
	if found == nil {
		t.Fatalf("%s: no struct %s", file, name)
	}
	return found
}
