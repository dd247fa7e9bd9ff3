package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/subsock/subsock/gateway"
)

// mainEnv makes the test binary run main instead of the tests, so that a
// test can start the command as a process of its own.
const mainEnv = "GO_TEST_SUBSOCK_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestPrecedence sets one flag of each kind from every combination of the
// three layers: the highest layer present wins, and replaces a list rather
// than adding to it.
func TestPrecedence(t *testing.T) {
	history := func(o *options) any { return (*historyRules)(&o.cfg.History).items() }
	cases := []struct {
		key                         string
		file, env, flag             string // a YAML value, a variable's value, a flag's value
		get                         func(*options) any
		fromFile, fromEnv, fromFlag any
	}{
		{"max-pending", "2097152", "3145728", "4194304",
			func(o *options) any { return o.cfg.Poller.MaxPending }, 2097152, 3145728, 4194304},
		{"ping-interval", "1m", "90s", "2m",
			func(o *options) any { return o.cfg.PingInterval }, time.Minute, 90 * time.Second, 2 * time.Minute},
		{"presence", `["room.>", "lobby"]`, "a.*,b.>", "cmd.>",
			func(o *options) any { return o.cfg.Presence }, []string{"room.>", "lobby"}, []string{"a.*", "b.>"}, []string{"cmd.>"}},
		{"presence", `"room.>,lobby"`, "a.*", "cmd.>,x",
			func(o *options) any { return o.cfg.Presence }, []string{"room.>", "lobby"}, []string{"a.*"}, []string{"cmd.>", "x"}},
		{"allow-anonymous", "true", "false", "true",
			func(o *options) any { return o.cfg.Security.AllowAnonymous }, true, false, true},
		{"history", `["chat.>=100,10m", "prices.*=1,1h"]`, "a.>=5,1m;b=2", "c=3,1s",
			history, []string{"chat.>=100,10m", "prices.*=1,1h"}, []string{"a.>=5,1m", "b=2,10m"}, []string{"c=3,1s"}},
		{"api-key", "from-file", "from-env", "from-flag",
			func(o *options) any { return o.cfg.Security.APIKey }, "from-file", "from-env", "from-flag"},
		{"jwt-secret", "from-file", "from-env", "from-flag",
			func(o *options) any { return string(o.cfg.Security.JWT.Secret) }, "from-file", "from-env", "from-flag"},
	}
	for _, c := range cases {
		def := c.get(parseNoArgs(t))
		for mask := range 8 {
			inFile, inEnv, inFlag := mask&1 != 0, mask&2 != 0, mask&4 != 0
			name := c.key + "/"
			want := def
			var args, env []string
			if inFile {
				name += "file"
				args = append(args, "-config", writeConfig(t, c.key+": "+c.file+"\n"))
				want = c.fromFile
			}
			if inEnv {
				name += "+env"
				env = append(env, envName(c.key)+"="+c.env)
				want = c.fromEnv
			}
			if inFlag {
				name += "+flag"
				args = append(args, "-"+c.key+"="+c.flag)
				want = c.fromFlag
			}
			t.Run(name, func(t *testing.T) {
				o, _, err := load(args, env)
				if err != nil {
					t.Fatal(err)
				}
				if got := c.get(o); !reflect.DeepEqual(got, want) {
					t.Errorf("got %#v, want %#v", got, want)
				}
			})
		}
	}
}

// TestEveryFlagFromEveryLayer holds the drift tests' promise for the file
// and the environment: each flag's variable and key set exactly what the
// flag sets.
func TestEveryFlagFromEveryLayer(t *testing.T) {
	newFlagSet(&options{}).VisitAll(func(f *flag.Flag) {
		if commandOnly[f.Name] {
			return
		}
		v := sentinel(t, f)
		yamlValue := strconv.Quote(v)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			yamlValue = v
		}
		want, _, err := load([]string{"-" + f.Name + "=" + v}, nil)
		if err != nil {
			t.Fatalf("-%s: %v", f.Name, err)
		}
		fromEnv, _, err := load(nil, []string{envName(f.Name) + "=" + v})
		if err != nil {
			t.Fatalf("$%s: %v", envName(f.Name), err)
		}
		fromFile, _, err := load([]string{"-config", writeConfig(t, f.Name+": "+yamlValue+"\n")}, nil)
		if err != nil {
			t.Fatalf("%s in a file: %v", f.Name, err)
		}
		fromFile.configFile = ""
		if !reflect.DeepEqual(fromEnv, want) {
			t.Errorf("$%s=%s gives %+v, -%s gives %+v", envName(f.Name), v, fromEnv, f.Name, want)
		}
		if !reflect.DeepEqual(fromFile, want) {
			t.Errorf("%s: %s in a file gives %+v, -%s gives %+v", f.Name, yamlValue, fromFile, f.Name, want)
		}
	})
}

// TestHistoryFromEnvironment: history rules carry a comma before their
// TTL, so SUBSOCK_HISTORY separates them with ';' or newlines.
func TestHistoryFromEnvironment(t *testing.T) {
	for _, c := range []struct {
		env  string
		want []string
	}{
		{"chat.>=100,10m", []string{"chat.>=100,10m"}},
		{"chat.>=100,10m;prices.*=1,1h", []string{"chat.>=100,10m", "prices.*=1,1h"}},
		{"chat.>=100,10m\nprices.*=1,1h\n", []string{"chat.>=100,10m", "prices.*=1,1h"}},
		{" chat.>=100 ; prices.*=1,1h ;", []string{"chat.>=100,10m", "prices.*=1,1h"}},
	} {
		o, _, err := load(nil, []string{"SUBSOCK_HISTORY=" + c.env})
		if err != nil {
			t.Errorf("%q: %v", c.env, err)
			continue
		}
		if got := (*historyRules)(&o.cfg.History).items(); !slices.Equal(got, c.want) {
			t.Errorf("SUBSOCK_HISTORY=%q gives %q, want %q", c.env, got, c.want)
		}
	}
}

// TestSettingErrors: every bad key, value or variable is an error that
// says where it is, an overridden one included.
func TestSettingErrors(t *testing.T) {
	cases := []struct {
		name    string
		file    string   // the -config file's content, if any
		env     []string // KEY=VALUE
		args    []string
		line    int    // in the file; 0 for a variable
		key     string // in the file
		envVar  string
		wantErr error // when the error has a sentinel
	}{
		{name: "unknown key", file: "max-pending: 1\nmaxpending: 2\n", line: 2, key: "maxpending", wantErr: errUnknownSetting},
		{name: "underscore key", file: "max_pending: 2\n", line: 1, key: "max_pending", wantErr: errUnknownSetting},
		{name: "bad integer", file: "addr: :0\nshards: many\n", line: 2, key: "shards"},
		{name: "duration without unit", file: "\n\nping-interval: 10\n", line: 3, key: "ping-interval"},
		{name: "bad bool", file: "demo: maybe\n", line: 1, key: "demo", wantErr: errWantBool},
		{name: "quoted bool", file: "demo: \"true\"\n", line: 1, key: "demo", wantErr: errWantBool},
		{name: "bad history item", file: "history:\n  - chat.>=100,10m\n  - chat\n", line: 3, key: "history", wantErr: gateway.ErrBadHistoryRule},
		{name: "list for a scalar", file: "broker: [a, b]\n", line: 1, key: "broker", wantErr: errWantValue},
		{name: "mapping for a list", file: "presence:\n  a: b\n", line: 2, key: "presence", wantErr: errWantList},
		{name: "list in a list", file: "presence: [[a]]\n", line: 1, key: "presence", wantErr: errWantList},
		{name: "repeated key", file: "shards: 1\nshards: 2\n", line: 2, key: "shards", wantErr: errRepeated},
		{name: "config in a file", file: "config: other.yaml\n", line: 1, key: "config", wantErr: errCommandOnly},
		{name: "not a mapping", file: "- shards\n", line: 1, wantErr: errWantMapping},
		{name: "second document", file: "shards: 1\n---\nshards: 2\n", line: 2, wantErr: errSecondDocument},
		{name: "overridden bad value", file: "shards: x\n", args: []string{"-shards", "5"}, env: []string{"SUBSOCK_SHARDS=6"}, line: 1, key: "shards"},
		{name: "file from SUBSOCK_CONFIG", file: "nope: 1\n", env: []string{"SUBSOCK_CONFIG=$FILE"}, line: 1, key: "nope", wantErr: errUnknownSetting},
		{name: "unknown variable", env: []string{"SUBSOCK_MAX_PENDNG=1"}, envVar: "SUBSOCK_MAX_PENDNG", wantErr: errUnknownSetting},
		{name: "unknown empty variable", env: []string{"SUBSOCK_TYPO="}, envVar: "SUBSOCK_TYPO", wantErr: errUnknownSetting},
		{name: "lower-case variable", env: []string{"SUBSOCK_max_pending=1"}, envVar: "SUBSOCK_max_pending", wantErr: errUnknownSetting},
		{name: "bad integer variable", env: []string{"SUBSOCK_SHARDS=x"}, envVar: "SUBSOCK_SHARDS"},
		{name: "bad duration variable", env: []string{"SUBSOCK_PING_TIMEOUT=60"}, envVar: "SUBSOCK_PING_TIMEOUT"},
		{name: "bad bool variable", env: []string{"SUBSOCK_DEMO=maybe"}, envVar: "SUBSOCK_DEMO"},
		{name: "bad history variable", env: []string{"SUBSOCK_HISTORY=chat.>=100,10m;chat"}, envVar: "SUBSOCK_HISTORY", wantErr: gateway.ErrBadHistoryRule},
		{name: "overridden bad variable", env: []string{"SUBSOCK_SHARDS=x"}, args: []string{"-shards", "5"}, envVar: "SUBSOCK_SHARDS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			args := c.args
			if c.file != "" {
				path = writeConfig(t, c.file)
				if !slices.ContainsFunc(c.env, func(kv string) bool { return strings.HasPrefix(kv, "SUBSOCK_CONFIG=") }) {
					args = append([]string{"-config", path}, args...)
				}
			}
			env := slices.Clone(c.env)
			for i := range env {
				env[i] = strings.ReplaceAll(env[i], "$FILE", path)
			}
			_, _, err := load(args, env)
			var se *settingError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a settingError", err)
			}
			t.Log(err)
			if c.envVar != "" {
				if se.Var != c.envVar || se.File != "" {
					t.Errorf("names %q (file %q), want $%s", se.Var, se.File, c.envVar)
				}
			} else if se.File != path || se.Line != c.line || se.Key != c.key {
				t.Errorf("names %s:%d key %q, want %s:%d key %q", se.File, se.Line, se.Key, path, c.line, c.key)
			}
			if c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Errorf("got %v, want %v", err, c.wantErr)
			}
		})
	}
}

// TestEveryErrorReported: one run names every mistake, the environment's
// first, then the file's in line order.
func TestEveryErrorReported(t *testing.T) {
	path := writeConfig(t, "shards: x\nfoo: 1\nping-interval: 10\n")
	_, _, err := load([]string{"-config", path}, []string{"SUBSOCK_ZZZ=1", "SUBSOCK_AAA=1"})
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("got %v, want every error joined", err)
	}
	var got []string
	for _, e := range joined.Unwrap() {
		var se *settingError
		if !errors.As(e, &se) {
			t.Fatalf("%v is not a settingError", e)
		}
		got = append(got, se.Var+strconv.Itoa(se.Line))
	}
	if want := []string{"SUBSOCK_AAA0", "SUBSOCK_ZZZ0", "1", "2", "3"}; !slices.Equal(got, want) {
		t.Errorf("errors in order %q, want %q", got, want)
	}
}

// TestYAMLSyntaxError names the file; the parser names the line.
func TestYAMLSyntaxError(t *testing.T) {
	path := writeConfig(t, "shards: 1\npresence: [a\n")
	_, _, err := load([]string{"-config", path}, nil)
	var se *settingError
	if !errors.As(err, &se) || se.File != path {
		t.Fatalf("got %v, want an error naming %s", err, path)
	}
	if !strings.Contains(err.Error(), "line ") {
		t.Errorf("%v names no line", err)
	}
}

// TestProjectVariablesAreNotSettings: the SUBSOCK_ variables of the
// project's own deployment files and test tools pass.
func TestProjectVariablesAreNotSettings(t *testing.T) {
	var env []string
	for k := range notSettings {
		env = append(env, k+"=-max-pending 1")
	}
	o, _, err := load(nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if def := parseNoArgs(t); !reflect.DeepEqual(o, def) {
		t.Errorf("%v changed the settings", env)
	}
}

// TestEmptyFile: a file without settings (empty, comments only, null)
// changes nothing; neither does a key without a value.
func TestEmptyFile(t *testing.T) {
	def := parseNoArgs(t)
	for _, content := range []string{"", "# nothing\n", "~\n", "shards:\npresence:\n"} {
		o, _, err := load([]string{"-config", writeConfig(t, content)}, nil)
		if err != nil {
			t.Errorf("%q: %v", content, err)
			continue
		}
		o.configFile = ""
		if !reflect.DeepEqual(o, def) {
			t.Errorf("%q changed the settings", content)
		}
	}
}

// TestPrintConfigRoundTrips: what -print-config writes, loaded as the only
// source, gives the same options and prints the same again. (Secrets are
// left out of what it writes: TestPrintConfigRedacts.)
func TestPrintConfigRoundTrips(t *testing.T) {
	var everyFlag []string
	newFlagSet(&options{}).VisitAll(func(f *flag.Flag) {
		if !commandOnly[f.Name] && !secretFlags[f.Name] {
			everyFlag = append(everyFlag, "-"+f.Name+"="+sentinel(t, f))
		}
	})
	cases := []struct {
		name      string
		args, env []string
		file      string
	}{
		{name: "defaults"},
		{name: "every flag", args: everyFlag},
		{name: "every layer",
			file: "history: [\"chat.>=100,10m\", \"prices.*=1,1h\"]\npresence: [\"room.>\"]\nmax-pending: 1048576\nallow-anonymous: true\n",
			env:  []string{"SUBSOCK_PING_INTERVAL=1m30s", "SUBSOCK_JOIN_LEAVE=room.>,lobby"},
			args: []string{"-broker", "redis://127.0.0.1:6379/2", "-addr", ":0", "-accept-rate", "12.5", "-log-format", "json"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if c.file != "" {
				args = append([]string{"-config", writeConfig(t, c.file)}, args...)
			}
			want, fs, err := load(args, c.env)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := printConfig(&out, fs); err != nil {
				t.Fatal(err)
			}
			got, fs2, err := load([]string{"-config", writeConfig(t, out.String())}, nil)
			if err != nil {
				t.Fatalf("%v loading\n%s", err, out.String())
			}
			want.configFile, got.configFile = "", ""
			if !reflect.DeepEqual(got, want) {
				t.Errorf("loaded back:\n%+v\nwant\n%+v\nfrom\n%s", got, want, out.String())
			}
			var again bytes.Buffer
			if err := printConfig(&again, fs2); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), out.Bytes()) {
				t.Errorf("printed again:\n%s\nfirst:\n%s", again.String(), out.String())
			}
		})
	}
}

// TestPrintConfigRedacts: no secret reaches the output, which still loads.
func TestPrintConfigRedacts(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		args, env []string
		hidden    []string // must not appear
		shown     string   // must appear
	}{
		{name: "jwt secret from the environment", env: []string{"SUBSOCK_JWT_SECRET=s3cret-env"},
			hidden: []string{"s3cret-env"}, shown: "jwt-secret: # redacted"},
		{name: "jwt secret flag", args: []string{"-jwt-secret", "s3cret-flag"},
			hidden: []string{"s3cret-flag"}, shown: "jwt-secret: # redacted"},
		{name: "jwt secret file", args: []string{"-jwt-secret-file", secretFile},
			hidden: []string{"from-the-file"}, shown: "jwt-secret-file: " + secretFile},
		{name: "api key", env: []string{"SUBSOCK_API_KEY=k3y"},
			hidden: []string{"k3y"}, shown: "api-key: # redacted"},
		{name: "redis password", args: []string{"-broker", "redis://user:pa55@h:6379/1"},
			hidden: []string{"pa55"}, shown: "broker: redis://user:xxxxx@h:6379/1 # password redacted"},
		{name: "redis cluster password", args: []string{"-broker", "redis-cluster://:pa55@h1:1,h2:2"},
			hidden: []string{"pa55"}, shown: "redis-cluster://:xxxxx@h1:1,h2:2"},
		{name: "nats tokens", args: []string{"-broker", "nats://t0ken@h1:4222,nats://u:pw2@h2:4222"},
			hidden: []string{"t0ken", "pw2"}, shown: "nats://xxxxx@h1:4222,nats://u:xxxxx@h2:4222"},
		{name: "jwks url", args: []string{"-jwks-url", "https://u:pw4@keys.example/jwks"},
			hidden: []string{"pw4"}, shown: "https://u:xxxxx@keys.example/jwks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, fs, err := load(c.args, c.env)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := printConfig(&out, fs); err != nil {
				t.Fatal(err)
			}
			for _, s := range c.hidden {
				if strings.Contains(out.String(), s) {
					t.Errorf("%q printed:\n%s", s, out.String())
				}
			}
			if !strings.Contains(out.String(), c.shown) {
				t.Errorf("%q not printed:\n%s", c.shown, out.String())
			}
			if _, _, err := load([]string{"-config", writeConfig(t, out.String())}, nil); err != nil {
				t.Errorf("output does not load: %v", err)
			}
		})
	}
}

// notSecret are the flags whose names sound secret but whose values are not.
var notSecret = map[string]string{
	"jwt-secret-file":          "a path; the secret it holds is never printed",
	"jwt-public-keys":          "paths of public keys",
	"token-cookie":             "a cookie's name",
	"kafka-sasl-password-file": "a path; the password it holds is never printed",
	"kafka-tls-key":            "the path of a key file",
}

// TestSecretLikeFlagsAreRedacted: a flag added with a secret-sounding name
// must be redacted by -print-config or be listed in notSecret, and a flag
// holding a URL must have its password redacted.
func TestSecretLikeFlagsAreRedacted(t *testing.T) {
	secretLike := regexp.MustCompile(`secret|key|pass|token|cred|auth`)
	newFlagSet(&options{}).VisitAll(func(f *flag.Flag) {
		if secretLike.MatchString(f.Name) && !secretFlags[f.Name] && notSecret[f.Name] == "" {
			t.Errorf("-%s looks secret: add it to secretFlags or to notSecret", f.Name)
		}
		if (strings.Contains(f.Name, "url") || strings.Contains(f.Usage, "://")) && !urlFlags[f.Name] {
			t.Errorf("-%s holds a URL: add it to urlFlags", f.Name)
		}
	})
}

// TestExampleFileLoads: deploy/subsock.example.yaml loads as is, holds the
// defaults (so it documents them truthfully) and covers README's Flags table.
func TestExampleFileLoads(t *testing.T) {
	const path = "../../deploy/subsock.example.yaml"
	o, _, err := load([]string{"-config", path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.configFile = ""
	if def := parseNoArgs(t); !reflect.DeepEqual(o, def) {
		t.Errorf("%s differs from the defaults:\n%+v\nwant\n%+v", path, o, def)
	}

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, flags, _ := strings.Cut(string(readme), "\n## Flags\n")
	flags, _, _ = strings.Cut(flags, "\n## ")
	name := regexp.MustCompile("`-([a-z][a-z0-9-]*)`")
	n := 0
	for line := range strings.Lines(flags) {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`-") {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			n++
			if _, ok := doc[m[1]]; !ok {
				t.Errorf("README's Flags table lists -%s; %s has no %s key", m[1], path, m[1])
			}
		}
	}
	if n < 10 {
		t.Errorf("found %d flags in README's Flags table; has its layout changed?", n)
	}
}

// TestJSONLogsWithConfigFile runs the command with -log-format json from a
// file: every line it writes to stderr, from start to a SIGTERM drain, is
// one JSON object.
func TestJSONLogsWithConfigFile(t *testing.T) {
	path := writeConfig(t, "addr: 127.0.0.1:0\nlog-format: json\nlog-level: debug\n"+
		"history: [\"chat.>=100,10m\"]\npresence: [\"room.>\"]\ndrain-timeout: 2s\n")
	cmd := command(t, "-config", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var msgs []string
	read := func(line string) {
		var entry struct {
			Msg  string `json:"msg"`
			File string `json:"file"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("not JSON: %q (%v)", line, err)
			return
		}
		if entry.Msg == "config file loaded" && entry.File != path {
			t.Errorf("config file loaded names %q, want %q", entry.File, path)
		}
		msgs = append(msgs, entry.Msg)
	}
	timeout := time.After(30 * time.Second)
	for !slices.Contains(msgs, "subsock listening") {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("stderr closed before the node listened; got %q", msgs)
			}
			read(line)
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("not listening after 30s; got %q", msgs)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for line := range lines {
		read(line)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
	for _, want := range []string{"config file loaded", "subsock listening", "stopped"} {
		if !slices.Contains(msgs, want) {
			t.Errorf("no %q line in %q", want, msgs)
		}
	}
}

// TestPrintConfigCommand: subsock -print-config exits 0, and what it
// prints loads.
func TestPrintConfigCommand(t *testing.T) {
	cmd := command(t, "-config", "../../deploy/subsock.example.yaml", "-print-config", "-shards", "8")
	cmd.Env = append(cmd.Env, "SUBSOCK_API_KEY=k3y")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if bytes.Contains(out, []byte("k3y")) {
		t.Errorf("the API key printed:\n%s", out)
	}
	o, _, err := load([]string{"-config", writeConfig(t, string(out))}, nil)
	if err != nil {
		t.Fatalf("%v loading\n%s", err, out)
	}
	if o.cfg.Shards != 8 {
		t.Errorf("shards %d, want 8", o.cfg.Shards)
	}
}

// command returns the test binary set to run main with args, in an
// environment without SUBSOCK_ variables.
func command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, mainEnv+"=1")
	return cmd
}

// writeConfig writes content to a config file of the test's own.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "subsock-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}
