package main

// Settings come in four layers, and each flag takes its value from the
// highest layer that sets it: the command line, then SUBSOCK_<FLAG>
// environment variables, then the -config file, then the flag's default.
// A layer replaces what a lower one set rather than adding to it, so a list
// given on the command line is the whole list.
//
// Every layer goes through the flag set's own Set methods, so a value means
// the same wherever it is written, and the drift tests on the flags hold
// for the file and the environment too.

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// envPrefix starts the environment variable of every flag: -max-pending is
// SUBSOCK_MAX_PENDING.
const envPrefix = "SUBSOCK_"

// commandOnly are the flags that say what to load or do rather than how the
// node runs: the command line or the environment sets them, never the file.
var commandOnly = map[string]bool{"config": true, "print-config": true}

// secretFlags hold secrets that -print-config must not write.
var secretFlags = map[string]bool{"jwt-secret": true, "api-key": true, "kafka-sasl-password": true}

// urlFlags hold URLs whose user info may carry a password or a token.
var urlFlags = map[string]bool{"broker": true, "jwks-url": true}

// notSettings are SUBSOCK_ variables that are not settings: the project's
// own deployment files and test tools use them, and a node started from
// there sees them. Any other unknown SUBSOCK_ variable is an error, so a
// misspelt setting is never silently ignored.
var notSettings = map[string]bool{
	"SUBSOCK_FLAGS":        true, // deploy/systemd: extra flags ExecStart= splits into arguments
	"SUBSOCK_CHROMIUM":     true, // demo/browsertest: the browser the tests drive
	"SUBSOCK_JS_ONLY":      true, // clients/js: the test cases to run
	"SUBSOCK_BENCH_WORKER": true, // bench: marks a harness worker process
}

// Errors a setting in the file or the environment can carry (inside a
// settingError, which says where it is).
var (
	errUnknownSetting = errors.New("no such setting (settings are the flags subsock -h lists)")
	errCommandOnly    = errors.New("set on the command line or in the environment, not in a file")
	errRepeated       = errors.New("set twice")
	errWantValue      = errors.New("want a single value")
	errWantList       = errors.New("want a value or a list of values")
	errWantBool       = errors.New("want true or false")
	errWantMapping    = errors.New("want settings as key: value")
	errSecondDocument = errors.New("want one YAML document")
)

// A settingError is a bad setting in the config file or the environment,
// with where it is: the file, line and key, or the variable.
type settingError struct {
	File string // the config file; "" for the environment
	Line int    // 0 when the YAML parser reports the line in Err itself
	Key  string
	Var  string // the environment variable, when File is ""
	Err  error
}

func (e *settingError) Error() string {
	switch {
	case e.File == "":
		return fmt.Sprintf("$%s: %v", e.Var, e.Err)
	case e.Line == 0:
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	case e.Key == "":
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	default:
		return fmt.Sprintf("%s:%d: %s: %v", e.File, e.Line, e.Key, e.Err)
	}
}

func (e *settingError) Unwrap() error { return e.Err }

// listValue is a flag that may be given more than once, each time adding to
// its list; a file gives it a YAML list.
type listValue interface {
	flag.Value
	items() []string
}

var (
	_ listValue = (*list)(nil)
	_ listValue = (*historyRules)(nil)
)

// A setting is one flag's values from the file or the environment, each
// handed to the flag's Set in turn.
type setting struct {
	name   string
	values []string
	lines  []int        // in the file, one per value
	at     settingError // where: File and Key or Var; Line is the key's
}

// load builds the options from the command line args, the environment
// (KEY=VALUE strings, as os.Environ returns them) and the -config file, and
// returns them with the flag set that holds them (for -print-config). It
// returns flag.ErrHelp for -h.
func load(args, environ []string) (*options, *flag.FlagSet, error) {
	// The command line alone first: it says which flags the lower layers
	// must leave alone, and it may name the file.
	cl := &options{}
	cfs := newFlagSet(cl)
	if err := cfs.Parse(args); err != nil {
		return nil, nil, err
	}
	fromArgs := map[string]bool{}
	cfs.Visit(func(f *flag.Flag) { fromArgs[f.Name] = true })

	env, errs := envSettings(cfs, environ)
	fromEnv := map[string]bool{}
	path := cl.configFile
	for _, s := range env {
		fromEnv[s.name] = true
		if s.name == "config" && !fromArgs["config"] {
			path = s.values[0]
		}
	}
	var file []setting
	if path != "" {
		var fileErrs []error
		file, fileErrs = fileSettings(cfs, path)
		errs = append(errs, fileErrs...)
	}

	// Every value is checked, an overridden one too: it would fail the day
	// its override goes.
	check := newFlagSet(&options{})
	for _, s := range slices.Concat(env, file) {
		errs = append(errs, apply(check, s)...)
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, byPlace)
		return nil, nil, errors.Join(errs...)
	}

	// Each flag is set from one layer only, lowest first; the command line
	// is parsed again last.
	o := &options{}
	fs := newFlagSet(o)
	fs.SetOutput(io.Discard) // the first parse has reported anything wrong
	for _, s := range file {
		if !fromArgs[s.name] && !fromEnv[s.name] {
			errs = append(errs, apply(fs, s)...)
		}
	}
	for _, s := range env {
		if !fromArgs[s.name] {
			errs = append(errs, apply(fs, s)...)
		}
	}
	errs = append(errs, fs.Parse(args))
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err // not reached: every value has been checked
	}
	return o, fs, o.resolveSecrets()
}

// byPlace orders errors: the environment's by variable name, then the
// file's by line, then any others.
func byPlace(a, b error) int {
	rank := func(err error) (int, string, int) {
		var e *settingError
		switch {
		case !errors.As(err, &e):
			return 2, "", 0
		case e.File == "":
			return 0, e.Var, 0
		default:
			return 1, "", e.Line
		}
	}
	ra, va, la := rank(a)
	rb, vb, lb := rank(b)
	if c := cmp.Compare(ra, rb); c != 0 {
		return c
	}
	if c := strings.Compare(va, vb); c != 0 {
		return c
	}
	return cmp.Compare(la, lb)
}

// apply hands s's values to its flag.
func apply(fs *flag.FlagSet, s setting) []error {
	var errs []error
	for i, v := range s.values {
		if err := fs.Set(s.name, v); err != nil {
			e := s.at
			if s.lines != nil {
				e.Line = s.lines[i]
			}
			if secretFlags[s.name] {
				v = "(redacted)"
			}
			if g, ok := fs.Lookup(s.name).Value.(flag.Getter); ok && isDuration(g) {
				err = fmt.Errorf("%w (want a duration such as 10s or 1m30s)", err)
			}
			e.Err = fmt.Errorf("invalid value %q: %w", v, err)
			errs = append(errs, &e)
		}
	}
	return errs
}

func isDuration(g flag.Getter) bool {
	_, ok := g.Get().(time.Duration)
	return ok
}

// envName is the environment variable of the flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// envSettings reads the SUBSOCK_ variables of environ, in name order. An
// empty variable counts as unset. A list flag's variable holds what the flag
// takes (comma-separated topics); rules for -history, whose TTLs follow a
// comma, are separated by ';' or newlines in SUBSOCK_HISTORY.
func envSettings(fs *flag.FlagSet, environ []string) ([]setting, []error) {
	environ = slices.Sorted(slices.Values(environ))
	var out []setting
	var errs []error
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(k, envPrefix)
		if !ok || notSettings[k] {
			continue
		}
		name := strings.ReplaceAll(strings.ToLower(rest), "_", "-")
		if fs.Lookup(name) == nil || envName(name) != k {
			errs = append(errs, &settingError{Var: k, Err: errUnknownSetting})
			continue
		}
		if v == "" {
			continue
		}
		s := setting{name: name, values: []string{v}, at: settingError{Key: name, Var: k}}
		if _, ok := fs.Lookup(name).Value.(*historyRules); ok {
			s.values = nil
			for _, r := range strings.FieldsFunc(v, func(c rune) bool { return c == ';' || c == '\n' }) {
				if r = strings.TrimSpace(r); r != "" {
					s.values = append(s.values, r)
				}
			}
		}
		out = append(out, s)
	}
	return out, errs
}

// fileSettings reads the YAML config file at path: one mapping whose keys
// are flag names. A list flag takes a YAML list, or a string that its flag
// would take; a bool flag takes a YAML boolean; every other flag a scalar
// written as on the command line (durations as Go durations: 10s, 1m30s).
// A key without a value (null) counts as unset. Errors name the file, the
// line and the key.
func fileSettings(fs *flag.FlagSet, path string) ([]setting, []error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, []error{err}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, []error{&settingError{File: path, Err: err}}
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, []error{&settingError{File: path, Line: next.Line, Err: errSecondDocument}}
	} else if !errors.Is(err, io.EOF) {
		return nil, []error{&settingError{File: path, Err: err}}
	}
	root := doc.Content[0]
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, []error{&settingError{File: path, Line: root.Line, Err: errWantMapping}}
	}

	var out []setting
	var errs []error
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], deref(root.Content[i+1])
		at := settingError{File: path, Line: k.Line, Key: k.Value}
		fail := func(line int, err error) {
			e := at
			e.Line, e.Err = line, err
			errs = append(errs, &e)
		}
		if k.Kind != yaml.ScalarNode {
			fail(k.Line, errWantMapping)
			continue
		}
		if first, ok := seen[k.Value]; ok {
			fail(k.Line, fmt.Errorf("%w (first at line %d)", errRepeated, first))
			continue
		}
		seen[k.Value] = k.Line
		f := fs.Lookup(k.Value)
		switch {
		case f == nil:
			fail(k.Line, errUnknownSetting)
			continue
		case commandOnly[f.Name]:
			fail(k.Line, errCommandOnly)
			continue
		case isNull(v):
			continue
		}
		s := setting{name: f.Name, at: at}
		add := func(n *yaml.Node) {
			s.values = append(s.values, n.Value)
			s.lines = append(s.lines, n.Line)
		}
		_, isList := f.Value.(listValue)
		boolFlag, isBool := f.Value.(interface{ IsBoolFlag() bool })
		switch {
		case isList && v.Kind == yaml.SequenceNode:
			for _, item := range v.Content {
				if item = deref(item); item.Kind != yaml.ScalarNode || isNull(item) {
					fail(item.Line, errWantList)
					continue
				}
				add(item)
			}
		case v.Kind != yaml.ScalarNode && isList:
			fail(v.Line, errWantList)
			continue
		case v.Kind != yaml.ScalarNode:
			fail(v.Line, errWantValue)
			continue
		case isBool && boolFlag.IsBoolFlag():
			var b bool
			if v.Decode(&b) != nil {
				fail(v.Line, fmt.Errorf("%w, not %q", errWantBool, v.Value))
				continue
			}
			s.values, s.lines = []string{strconv.FormatBool(b)}, []int{v.Line}
		default:
			add(v)
		}
		out = append(out, s)
	}
	return out, errs
}

// deref follows a YAML alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// printConfig writes every setting fs holds as a YAML file -config
// accepts, secrets left out: a secret flag that is set is written as a key
// without a value (unset, when the file is loaded) marked redacted, and a
// password or token in a URL as xxxxx.
func printConfig(w io.Writer, fs *flag.FlagSet) error {
	root := &yaml.Node{Kind: yaml.MappingNode}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if commandOnly[f.Name] || err != nil {
			return
		}
		var v any
		if l, ok := f.Value.(listValue); ok {
			v = l.items()
		} else {
			v = f.Value.(flag.Getter).Get()
			if d, ok := v.(time.Duration); ok {
				v = formatDuration(d)
			}
		}
		key, val := &yaml.Node{}, &yaml.Node{}
		if err = key.Encode(f.Name); err != nil {
			return
		}
		switch s, _ := v.(string); {
		case secretFlags[f.Name] && s != "":
			val.Kind, val.Tag, val.LineComment = yaml.ScalarNode, "!!null", "redacted"
		case urlFlags[f.Name] && redactURL(s) != s:
			err = val.Encode(redactURL(s))
			val.LineComment = "password redacted"
		default:
			err = val.Encode(v)
		}
		root.Content = append(root.Content, key, val)
	})
	if err != nil {
		return err
	}
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root},
		HeadComment: "subsock settings: file, environment and flags applied; secrets redacted"}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return enc.Close()
}

// formatDuration writes d as time.Duration.String does, without the zero
// units it ends in: 10m, not 10m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// redactURL hides the password (user:xxxxx@) or token (xxxxx@) in each of
// the comma-separated URLs in s.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			continue
		}
		end := len(rest)
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			end = j
		}
		at := strings.LastIndexByte(rest[:end], '@')
		if at < 0 {
			continue
		}
		info := "xxxxx"
		if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
			info = user + ":xxxxx"
		}
		parts[i] = scheme + "://" + info + rest[at:]
	}
	return strings.Join(parts, ",")
}
