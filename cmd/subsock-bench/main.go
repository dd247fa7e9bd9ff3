// Command subsock-bench loads subsock nodes over loopback and reports what
// connections, subscriptions and broadcasts cost.
//
//	subsock-bench -scenario latency -target ws://127.0.0.1:8080/ws
//	subsock-bench -scenario idle -spawn bin/subsock -spawn-env GOMEMLIMIT=2GiB -out bench/results -- -loops 2
//	subsock-bench -summarize bench/results
//
// Clients run in child processes (this binary re-executed with -worker).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/subsock/subsock/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-worker" {
		if err := bench.RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "subsock-bench worker:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && (os.Args[1] == "-summarize" || os.Args[1] == "--summarize") {
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: subsock-bench -summarize DIR")
			os.Exit(2)
		}
		if err := summarize(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "subsock-bench:", err)
			os.Exit(1)
		}
		return
	}
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "subsock-bench:", err)
	}
	os.Exit(code)
}

// run returns 0 when the run was OK, 1 when it failed, 2 for bad flags and
// 3 when it completed but judged the node NOT OK.
func run(args []string) (int, error) {
	var p bench.Params
	fs := bench.NewFlagSet("subsock-bench", &p)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: subsock-bench [flags] [-- node flags for -spawn]\n"+
			"       subsock-bench -summarize DIR   (write DIR/summary.md from DIR/*.json)\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := bench.ParseArgs(fs, &p, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var cfg bench.Config
	if p.Out != "" && p.Spawn != "" {
		if err := os.MkdirAll(p.Out, 0o755); err != nil {
			return 1, err
		}
		f, err := os.Create(filepath.Join(p.Out, p.Name+".node.log.tmp"))
		if err != nil {
			return 1, err
		}
		defer f.Close()
		cfg.NodeLog = f
	}
	res, err := bench.Run(ctx, cfg, p)
	if res != nil {
		bench.PrintFigures(os.Stdout, res)
		if p.Out != "" {
			j, h, werr := res.WriteFiles(p.Out)
			if werr != nil {
				return 1, werr
			}
			fmt.Printf("  wrote %s and %s\n", j, h)
		}
	}
	if err != nil {
		return 1, err
	}
	if !res.OK {
		return 3, nil
	}
	return 0, nil
}

// summarize writes DIR/summary.md from every result in DIR, in the order of
// the standard scenarios, and prints it.
func summarize(dir string) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	var results []*bench.Result
	for _, path := range paths {
		r, err := bench.ReadResult(path)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	if len(results) == 0 {
		return fmt.Errorf("no results in %s", dir)
	}
	order := func(r *bench.Result) int {
		if i := slices.Index(bench.Scenarios, r.Scenario); i >= 0 {
			return i
		}
		return len(bench.Scenarios)
	}
	slices.SortStableFunc(results, func(a, b *bench.Result) int {
		if d := order(a) - order(b); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	var b strings.Builder
	b.WriteString("# subsock bench results\n\n")
	if err := bench.WriteSummary(&b, results); err != nil {
		return err
	}
	out := filepath.Join(dir, "summary.md")
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Print(b.String())
	fmt.Println("\nwrote", out)
	return nil
}
