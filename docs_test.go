package caddywebhooks

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/verify"
)

var (
	fence   = regexp.MustCompile("(?s)```.*?```")
	mdLink  = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile(`(?m)^#+ (.*)$`)
	unsafe  = regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
)

// TestDocLinks holds every relative link of the docs to a file that exists
// and, with a #fragment, to a heading of that file (GitHub's anchors).
func TestDocLinks(t *testing.T) {
	docs, _ := filepath.Glob("docs/*.md")
	for _, file := range append([]string{"README.md", "CHANGELOG.md", "bench/README.md"}, docs...) {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(fence.ReplaceAllString(string(text), ""), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(link, "#")
			target := file
			if path != "" {
				target = filepath.Join(filepath.Dir(file), path)
			}
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s: link %s: no such file", file, link)
				continue
			}
			if anchor != "" && strings.HasSuffix(target, ".md") && !hasAnchor(t, target, anchor) {
				t.Errorf("%s: link %s: no such heading", file, link)
			}
		}
	}
}

func hasAnchor(t *testing.T, file, anchor string) bool {
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range heading.FindAllStringSubmatch(string(text), -1) {
		a := strings.ReplaceAll(unsafe.ReplaceAllString(strings.ToLower(strings.TrimSpace(m[1])), ""), " ", "-")
		if a == anchor {
			return true
		}
	}
	return false
}

// TestReadmeCaddyfiles holds the README's Caddyfiles to the files in
// examples/, which CI adapts with the built binary.
func TestReadmeCaddyfiles(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for section, file := range map[string]string{
		"## A minimal Caddyfile":    "examples/minimal.Caddyfile",
		"## The deliveries console": "examples/console.Caddyfile",
	} {
		example, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(readme), section)
		_, block, _ := strings.Cut(rest, "```caddyfile\n")
		block, _, _ = strings.Cut(block, "```")
		if block != string(example) {
			t.Errorf("README's Caddyfile under %q differs from %s:\n%s", section, file, block)
		}
	}
}

// TestReadmePrompt: what the README says example-github's filter and
// prompt make of the README's signed pull request holds.
func TestReadmePrompt(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\$ body='(.*)'$`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("no body= line in README.md")
	}
	body := m[1]
	data, err := os.ReadFile("examples/integrations.json")
	if err != nil {
		t.Fatal(err)
	}
	ins, err := integration.DecodeFile(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := ins["example-github"]
	h := http.Header{"X-Github-Event": {"pull_request"}, "Content-Type": {"application/json"}}
	vars := verify.ExpressionVars(in, h, body)
	if ok, err := in.Filter().Allows(vars); !ok || err != nil {
		t.Errorf("the filter drops the README's pull request: %v", err)
	}
	text := in.Prompt().Render(vars)
	claim := fmt.Sprintf("(%d bytes) instead of the delivery (%d bytes here;", len(text), len(body))
	if !strings.Contains(strings.Join(strings.Fields(string(readme)), " "), claim) {
		t.Errorf("README.md does not say %q (the prompt: %q)", claim, text)
	}
}
