// Package browsertest runs pages in a real headless Chromium, driven by chromedp, against a
// real in-process subsock node. It is for tests: failures end the test through testing.TB.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is where Debian's chromium package puts the browser; $SUBSOCK_CHROMIUM
// overrides it.
const ChromiumPath = "/usr/bin/chromium"

// Tab is one page of a headless Chromium started for one test. Its console is copied to the
// test log; uncaught exceptions are also kept for Exceptions.
type Tab struct {
	// Ctx is the chromedp context of the tab; derive per-action timeouts from it.
	Ctx context.Context
	t   testing.TB

	mu         sync.Mutex
	exceptions []string
}

// NewTab starts a browser for the test, opens a tab, and stops both when the test ends. It
// fails the test, naming scripts/install-deps.sh, when Chromium is missing: a browser test is
// never skipped silently.
func NewTab(t testing.TB) *Tab {
	t.Helper()
	path := ChromiumPath
	if p := os.Getenv("SUBSOCK_CHROMIUM"); p != "" {
		path = p
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("browser tests need Chromium at %s (%v): run scripts/install-deps.sh, which installs Debian's chromium package, or set $SUBSOCK_CHROMIUM", path, err)
	}
	var stderr lockedBuffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
		chromedp.CombinedOutput(&stderr),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root inside its sandbox.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	tab := &Tab{Ctx: ctx, t: t}
	consoleDone := make(chan struct{})
	// Cleanups run last-in first-out: this one stops the browser before t.TempDir's cleanup
	// removes the profile directory it writes to.
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		<-consoleDone
	})
	// The first action starts the browser; it must run on a context without a deadline.
	if err := chromedp.Do(ctx); err != nil {
		close(consoleDone)
		t.Fatalf("starting %s: %v\n%s", path, err, stderr.String())
	}
	messages := chromedp.Console(ctx)
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			where := ""
			if m.URL != "" {
				where = " (" + m.URL + ":" + strconv.FormatInt(m.Line+1, 10) + ")"
			}
			t.Logf("browser %s%s", m, where)
			if m.IsException() {
				tab.mu.Lock()
				tab.exceptions = append(tab.exceptions, m.Text+where)
				tab.mu.Unlock()
			}
		}
	}()
	return tab
}

// Exceptions returns the page's uncaught exceptions and unhandled rejections so far.
func (tab *Tab) Exceptions() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]string(nil), tab.exceptions...)
}

// Do runs steps with a timeout and fails the test on error, naming what was being done.
func (tab *Tab) Do(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tab.fail(what, err)
	}
}

// Wait polls the JavaScript expression in the page until it is truthy, and fails the test,
// with a screenshot, when timeout passes first.
func (tab *Tab) Wait(what, expr string, timeout time.Duration) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout))); err != nil {
		tab.fail(what, err)
	}
}

// Poll is Wait without failing: it returns an error when the expression is not truthy
// within timeout.
func (tab *Tab) Poll(expr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(tab.Ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout)))
	return err
}

// Eval evaluates expr in the page (awaiting a promise) and returns its JSON-decoded value.
func Eval[T any](tab *Tab, expr string) T {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tab.fail("evaluating "+expr, err)
	}
	return v
}

// Screenshot saves the visible page as testdata/artefacts/<test>-<name>.png at the
// repository root, logs the path and returns it.
func (tab *Tab) Screenshot(name string) string {
	tab.t.Helper()
	path, err := tab.screenshot(name)
	if err != nil {
		tab.t.Fatalf("screenshot %s: %v", name, err)
	}
	tab.t.Logf("screenshot: %s", path)
	return path
}

func (tab *Tab) screenshot(name string) (string, error) {
	ctx, cancel := context.WithTimeout(tab.Ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return "", err
	}
	dir, err := ArtefactDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, fileName(tab.t.Name())+"-"+name+".png")
	return path, os.WriteFile(path, png, 0o644)
}

// fail ends the test, keeping a screenshot of the page as it was for the post-mortem.
func (tab *Tab) fail(what string, err error) {
	tab.t.Helper()
	if path, serr := tab.screenshot("failure"); serr == nil {
		tab.t.Logf("screenshot at failure: %s", path)
	}
	tab.t.Fatalf("%s: %v", what, err)
}

// ArtefactDir returns testdata/artefacts at the repository root (the directory holding
// go.mod), creating it. The directory is gitignored.
func ArtefactDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("browsertest: no go.mod above the working directory")
		}
		dir = parent
	}
	out := filepath.Join(dir, "testdata", "artefacts")
	return out, os.MkdirAll(out, 0o755)
}

func fileName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// lockedBuffer collects the browser's output, written from chromedp's goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
