package main

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
)

// notFlags are the Config fields no flag sets (pointers and funcs, such as
// loggers and hooks, are skipped on their own).
var notFlags = map[string]string{
	"Poller.OverflowFinal": "the close frame gateway.New hands the poller",
}

// derived are the fields whose default depends on another setting or on
// the host: their flags default to 0, so -h does not print one host's
// figure or a value that ignores the flag it derives from.
var derived = map[string]bool{
	"Poller.Loops":      true, // NumCPU
	"Poller.Writers":    true, // Loops
	"Poller.RecvBuffer": true, // MaxMessage/2
	"FanoutWorkers":     true, // GOMAXPROCS
	"PublishWorkers":    true, // 4 × GOMAXPROCS
	"MaxInputBacklog":   true, // 2 × MaxMessage
	"MaxReplay":         true, // 4 × Poller.MaxPending
}

// TestFlagDefaultsAreTheLibrarys parses no arguments and checks every flag
// that sets a Config field against gateway.Config.WithDefaults: it holds
// the library's default, or, for a derived one, 0 with help saying what 0
// stands for. A literal default written in a flag that drifts from the
// library's fails here.
func TestFlagDefaultsAreTheLibrarys(t *testing.T) {
	o := parseNoArgs(t)
	fs := newFlagSet(&options{})
	def := leaves(gateway.Config{}.WithDefaults())
	raw := leaves(o.cfg)
	for name, path := range flagFields(t) {
		got, want := raw[path], def[path]
		switch {
		case derived[path]:
			if !reflect.ValueOf(got).IsZero() {
				t.Errorf("-%s defaults to %v; %s is derived, so its flag defaults to 0", name, got, path)
			} else if !strings.Contains(fs.Lookup(name).Usage, "(0: ") {
				t.Errorf("-%s defaults to 0 for %s but its help does not say what 0 stands for", name, path)
			}
		case !reflect.DeepEqual(got, want):
			t.Errorf("-%s defaults to %v, the library's default for %s is %v", name, got, path, want)
		}
	}
	// What the flags build, once the library fills it, is what a zero
	// Config runs with.
	got := leaves(o.cfg.WithDefaults())
	for _, path := range sortedKeys(def) {
		if !reflect.DeepEqual(got[path], def[path]) {
			t.Errorf("%s: flags give %v, library default %v", path, got[path], def[path])
		}
	}
}

// TestEveryConfigFieldHasAFlag holds the style rule that every field is
// reachable from a flag.
func TestEveryConfigFieldHasAFlag(t *testing.T) {
	set := map[string]bool{}
	for _, path := range flagFields(t) {
		set[path] = true
	}
	for _, path := range sortedKeys(leaves(gateway.Config{})) {
		if _, skip := notFlags[path]; !skip && !set[path] {
			t.Errorf("no flag sets %s", path)
		}
	}
}

// parseNoArgs loads the options from no flags, no environment and no file.
func parseNoArgs(t *testing.T) *options {
	t.Helper()
	o, _, err := load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// flagFields maps each flag that sets a Config field to that field's path,
// found by setting the flag alone to an unusual value and seeing which
// field changes.
func flagFields(t *testing.T) map[string]string {
	t.Helper()
	base := leaves(parseNoArgs(t).cfg)
	m := map[string]string{}
	newFlagSet(&options{}).VisitAll(func(f *flag.Flag) {
		o := &options{}
		fs := newFlagSet(o)
		fs.SetOutput(testWriter{t})
		if err := fs.Parse([]string{"-" + f.Name + "=" + sentinel(t, fs.Lookup(f.Name))}); err != nil {
			t.Fatalf("-%s: %v", f.Name, err)
		}
		if err := o.resolveSecrets(); err != nil {
			t.Fatalf("-%s: %v", f.Name, err)
		}
		var changed []string
		for path, v := range leaves(o.cfg) {
			if !reflect.DeepEqual(v, base[path]) {
				changed = append(changed, path)
			}
		}
		switch len(changed) {
		case 0: // a flag of the command's own (-addr, -log-level, ...)
		case 1:
			m[f.Name] = changed[0]
		default:
			slices.Sort(changed)
			t.Errorf("-%s sets %d fields: %v", f.Name, len(changed), changed)
		}
	})
	return m
}

// sentinel returns a value for f that no default equals.
func sentinel(t *testing.T, f *flag.Flag) string {
	t.Helper()
	if _, ok := f.Value.(*list); ok {
		return "sentinel.a,sentinel.b"
	}
	if _, ok := f.Value.(*historyRules); ok {
		return "sentinel.>=7,7m"
	}
	switch v := f.Value.(flag.Getter).Get().(type) {
	case bool:
		return strconv.FormatBool(!v)
	case int, int64:
		return "7654321"
	case float64:
		return "765.5"
	case time.Duration:
		return "7654321s"
	case string:
		if f.Name == "jwt-secret-file" || f.Name == "kafka-sasl-password-file" {
			p := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(p, []byte("sentinel-from-file\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		return "sentinel"
	default:
		t.Fatalf("-%s: no sentinel for %T", f.Name, v)
		return ""
	}
}

// leaves returns cfg's settable fields by dotted path, nested structs
// walked; pointers, funcs and interfaces (loggers, hooks, clients) are
// left out.
func leaves(cfg gateway.Config) map[string]any {
	m := map[string]any{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		for i := range v.NumField() {
			sf, fv := v.Type().Field(i), v.Field(i)
			if !sf.IsExported() {
				continue
			}
			path := prefix + sf.Name
			switch fv.Kind() {
			case reflect.Struct:
				walk(path+".", fv)
			case reflect.Pointer, reflect.Func, reflect.Interface, reflect.Chan, reflect.Map:
			default:
				m[path] = fv.Interface()
			}
		}
	}
	walk("", reflect.ValueOf(cfg))
	return m
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// testWriter sends a flag set's complaints to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
