package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestArgs(t *testing.T) {
	wd, _ := os.Getwd()
	b := build{CaddyVersion: "v2.11.9", Plugins: []plugin{
		{ModulePath: "example.com/a", Version: "v0.0.0-00010101000000-000000000000", Replace: "."},
		{ModulePath: "example.com/b", Version: "v1.2.3"},
		{ModulePath: "example.com/c"},
	}}
	got, err := b.args("bin/caddy")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"build", "v2.11.9", "--output", filepath.Join(wd, "bin/caddy"),
		"--with", "example.com/a@v0.0.0-00010101000000-000000000000=" + wd,
		"--with", "example.com/b@v1.2.3",
		"--with", "example.com/c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if _, err := (build{}).args("x"); err == nil {
		t.Error("no caddy_version: want an error")
	}
	if _, err := (build{CaddyVersion: "v2", Plugins: []plugin{{}}}).args("x"); err == nil {
		t.Error("plugin without module_path: want an error")
	}
}

// TestRepositoryBuildFile checks that the repository's own xcaddy.json reads.
func TestRepositoryBuildFile(t *testing.T) {
	b, err := load("../../xcaddy.json")
	if err != nil {
		t.Fatal(err)
	}
	if b.CaddyVersion == "" || len(b.Plugins) == 0 {
		t.Errorf("xcaddy.json names no caddy_version or plugins: %+v", b)
	}
}
