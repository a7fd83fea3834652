// Command buildcaddy builds Caddy with the plugins that xcaddy.json names,
// by running xcaddy. xcaddy.json uses xcaddy's own Builder field names:
//
//	{"caddy_version": "v2.11.9",
//	 "plugins": [{"module_path": "...", "version": "...", "replace": "."}]}
//
// A plugin's replace, if set, builds it from that local directory (our own
// module is not published, so it is built from ".").
//
// Usage: go run ./internal/buildcaddy [-config xcaddy.json] [-xcaddy xcaddy] -o bin/caddy
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// build is the part of xcaddy.json this command reads.
type build struct {
	CaddyVersion string   `json:"caddy_version"`
	Plugins      []plugin `json:"plugins"`
}

type plugin struct {
	ModulePath string `json:"module_path"`
	Version    string `json:"version"`
	Replace    string `json:"replace"`
}

func main() {
	config := flag.String("config", "xcaddy.json", "the build file")
	xcaddy := flag.String("xcaddy", "xcaddy", "the xcaddy command")
	output := flag.String("o", "bin/caddy", "the binary to write")
	flag.Parse()
	if err := run(*config, *xcaddy, *output); err != nil {
		fmt.Fprintln(os.Stderr, "buildcaddy:", err)
		os.Exit(1)
	}
}

func run(config, xcaddy, output string) error {
	b, err := load(config)
	if err != nil {
		return err
	}
	args, err := b.args(output)
	if err != nil {
		return fmt.Errorf("%s: %v", config, err)
	}
	cmd := exec.Command(xcaddy, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fmt.Println(xcaddy, args)
	return cmd.Run()
}

// load reads a build file, refusing fields it does not know.
func load(path string) (build, error) {
	var b build
	f, err := os.Open(path)
	if err != nil {
		return b, err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("%s: %v", path, err)
	}
	return b, nil
}

// args returns xcaddy's arguments for the build.
func (b build) args(output string) ([]string, error) {
	if b.CaddyVersion == "" {
		return nil, fmt.Errorf("caddy_version is required")
	}
	out, err := filepath.Abs(output)
	if err != nil {
		return nil, err
	}
	args := []string{"build", b.CaddyVersion, "--output", out}
	for _, p := range b.Plugins {
		if p.ModulePath == "" {
			return nil, fmt.Errorf("a plugin has no module_path")
		}
		with := p.ModulePath
		if p.Version != "" {
			with += "@" + p.Version
		}
		if p.Replace != "" {
			dir, err := filepath.Abs(p.Replace)
			if err != nil {
				return nil, err
			}
			with += "=" + dir
		}
		args = append(args, "--with", with)
	}
	return args, nil
}
