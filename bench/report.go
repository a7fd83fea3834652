package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Machine says where the figures come from.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	Go         string `json:"go"`
	Redis      string `json:"redis"`
	OS         string `json:"os"`
	MemTotalMB int64  `json:"mem_total_mb"`
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				m.MemTotalMB = kb / 1024
			}
		}
		f.Close()
	}
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		m.Redis = strings.TrimSpace(string(out))
	}
	return m
}

// MicroResult is one Go benchmark's line.
type MicroResult struct {
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
}

// runMicro runs every Go benchmark of the module, showing their output,
// and parses it. Only the packages that have benchmarks are built.
func runMicro() ([]MicroResult, error) {
	pkgs, err := benchPackages()
	if err != nil {
		return nil, err
	}
	fmt.Println("micro-benchmarks: go test -run '^$' -bench . -benchmem " + strings.Join(pkgs, " "))
	cmd := exec.Command("go", append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem"}, pkgs...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var res []MicroResult
	s := bufio.NewScanner(out)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "Benchmark") && !strings.HasPrefix(line, "ok") && !strings.HasPrefix(line, "FAIL") {
			continue
		}
		fmt.Println("  " + line)
		if r, ok := parseBenchLine(line); ok {
			res = append(res, r)
		}
	}
	return res, cmd.Wait()
}

// benchPackages lists the packages, as ./dir, whose tests hold a Benchmark
// function.
func benchPackages() ([]string, error) {
	var pkgs []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if pkg := "./" + filepath.Dir(path); bytes.Contains(src, []byte("\nfunc Benchmark")) && !slices.Contains(pkgs, pkg) {
			pkgs = append(pkgs, pkg)
		}
		return nil
	})
	return pkgs, err
}

func parseBenchLine(line string) (MicroResult, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
		return MicroResult{}, false
	}
	r := MicroResult{Name: strings.TrimPrefix(f[0], "Benchmark")}
	if i := strings.LastIndexByte(r.Name, '-'); i > 0 {
		r.Name = r.Name[:i]
	}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			continue
		}
		switch f[i+1] {
		case "ns/op":
			r.NsPerOp = v
		case "B/op":
			r.BytesPerOp = v
		case "allocs/op":
			r.AllocsPerOp = v
		}
	}
	return r, true
}

// ratios are, for each pair, the median over the rounds of the ratio of
// the two configurations' requests per second in that round: slots of one
// round run back to back, so what drifts between rounds (a neighbour on
// the host, a CPU's clock) cancels out.
func ratios(load map[string]LoadStats) map[string]float64 {
	ratio := func(x, y string) float64 {
		var r []float64
		for i := range min(len(load[x].RoundRPS), len(load[y].RoundRPS)) {
			r = append(r, load[x].RoundRPS[i]/load[y].RoundRPS[i])
		}
		return median(r)
	}
	return map[string]float64{
		"c/b": ratio("c", "b"), "c/a": ratio("c", "a"),
		"c0/b": ratio("c0", "b"), "c0/a": ratio("c0", "a"),
		"d/b": ratio("d", "b"),
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// Goal is one target of the performance issue and what was measured.
type Goal struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

func goals(r Results) []Goal {
	micro := map[string]MicroResult{}
	for _, m := range r.Micro {
		micro[m.Name] = m
	}
	h := micro["HandlerAcceptedNoRedis"]
	g := []Goal{
		{"c0/b: accepting durably vs reverse_proxy", ">= 1.5", fmt.Sprintf("%.2f (c/b %.2f)", r.Ratios["c0/b"], r.Ratios["c/b"]), r.Ratios["c0/b"] >= 1.5},
		{"c0/a: accepting durably vs respond", ">= 0.5", fmt.Sprintf("%.2f (c/a %.2f)", r.Ratios["c0/a"], r.Ratios["c/a"]), r.Ratios["c0/a"] >= 0.5},
		{"d/b: sync workflow vs reverse_proxy", ">= 0.8", fmt.Sprintf("%.2f", r.Ratios["d/b"]), r.Ratios["d/b"] >= 0.8},
		{"p99 of c vs p99 of b", "<=", fmt.Sprintf("%.2f ms vs %.2f ms", r.Load["c"].P99ms, r.Load["b"].P99ms), r.Load["c"].P99ms <= r.Load["b"].P99ms},
		{"Redis round trips, accepted (single Redis)", "1", fmt.Sprintf("%.3f scripts, %.1f a read", r.RoundTrips.AcceptedAsync, r.RoundTrips.AcceptedPerRead),
			r.RoundTrips.AcceptedAsync < 1.05},
		{"Redis round trips, rejected before the guard", "0", fmt.Sprintf("%.3f", r.RoundTrips.Rejected), r.RoundTrips.Rejected < 0.01},
		{"accepted 1 KB through the handler, no Redis", "<= 10 µs, <= 20 allocs", fmt.Sprintf("%.1f µs, %.0f allocs", h.NsPerOp/1000, h.AllocsPerOp),
			h.NsPerOp > 0 && h.NsPerOp <= 10_000 && h.AllocsPerOp <= 20},
		{fmt.Sprintf("RSS with %d cached integrations", r.Memory.Integrations), "<= 150 MB, bounded",
			fmt.Sprintf("%.0f MB settled, %.0f at once", r.Memory.RSSSettledMB, r.Memory.RSSAfterMB), r.Memory.RSSSettledMB <= 150},
	}
	if r.Micro == nil {
		g[6].Measured, g[6].Met = "not run (-micro=false)", false
	}
	if d := r.Dispatch; d != nil {
		call := time.Duration(d.CallSeconds * float64(time.Second))
		quiet := fmt.Sprintf("%.1f s", d.QuietDelaySeconds)
		if !d.QuietDelivered {
			quiet = fmt.Sprintf("> %.0f s (not delivered)", d.QuietDelaySeconds)
		}
		g = append(g,
			Goal{fmt.Sprintf("dispatch: delivered/s, %v calls, %d over %d webhooks", call, d.Queued, d.Webhooks), ">= 200",
				fmt.Sprintf("%.1f (%d in flight)", d.DeliveredPerSec, d.MaxInFlight), d.DeliveredPerSec >= 200},
			Goal{fmt.Sprintf("dispatch: quiet webhook's delay, %d queued on another", d.Backlog), "<= " + (2 * call).String(),
				quiet, d.QuietDelivered && d.QuietDelaySeconds <= 2*d.CallSeconds},
			Goal{"dispatch: resident memory per in-flight dispatch", "reported", fmt.Sprintf("%.1f KB", d.BytesPerInFlight/1024), true},
		)
	}
	return g
}

func printTable(r Results) {
	fmt.Printf("\nmachine: %s, %d cores, %d MB, %s, %s\n", r.Machine.CPU, r.Machine.Cores, r.Machine.MemTotalMB, r.Machine.Go, r.Machine.Redis)
	fmt.Printf("\n%-40s %10s %9s %9s %9s %7s %23s\n", "configuration", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "CPU µs/req: caddy redis bench  busy")
	names := map[string]string{"a": "a  respond 200", "b": "b  reverse_proxy to stub", "c": "c  codemie_webhooks async, dispatching",
		"c0": "c0 codemie_webhooks async, workers off", "d": "d  codemie_webhooks sync (workflow)"}
	for _, l := range configurations {
		s := r.Load[l]
		// busy: the share of the machine those three processes used
		busy := (s.CPU.Caddy + s.CPU.Redis + s.CPU.Load) * s.RPS / 1e6 / float64(r.Machine.Cores)
		fmt.Printf("%-40s %10.0f %9.2f %9.2f %9.2f %7d %12.1f %5.1f %5.1f %4.0f%%\n", names[l], s.RPS, s.P50ms, s.P99ms, s.P999ms, s.Errors,
			s.CPU.Caddy, s.CPU.Redis, s.CPU.Load, 100*busy)
	}
	fmt.Printf("\nratios (median of the rounds' own): c/b %.2f  c/a %.2f  c0/b %.2f  c0/a %.2f  d/b %.2f\n",
		r.Ratios["c/b"], r.Ratios["c/a"], r.Ratios["c0/b"], r.Ratios["c0/a"], r.Ratios["d/b"])
	fmt.Printf("Redis scripts per request: accepted async %.3f, accepted sync %.3f, rejected %.3f; c0 accepted %.1f requests per Redis read\n",
		r.RoundTrips.AcceptedAsync, r.RoundTrips.AcceptedSync, r.RoundTrips.Rejected, r.RoundTrips.AcceptedPerRead)
	fmt.Printf("RSS: %.0f MB at start, %.0f MB right after %d integrations were each requested once, %.0f MB settled (cache bound %d)\n",
		r.Memory.RSSBeforeMB, r.Memory.RSSAfterMB, r.Memory.Integrations, r.Memory.RSSSettledMB, r.Memory.CacheBound)
	fmt.Printf("\n%-50s %-24s %-28s %s\n", "goal", "target", "measured", "met")
	for _, g := range r.Goals {
		fmt.Printf("%-50s %-24s %-28s %v\n", g.Name, g.Target, g.Measured, g.Met)
	}
}
